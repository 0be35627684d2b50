// `node --import tsx bench/import.ts [--entries 1000000]`: time and peak RSS of `online-stats import` on a demo file.
//
// Not a case of bench/run.ts: it needs no service, only the built CLI (`npm run build` first) and /usr/bin/time for
// the peak RSS. It exits 1 when the peak RSS passes 200 MB, the bound docs/benchmarks.md states.
import { spawnSync } from 'node:child_process';
import { createWriteStream, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CLI, SECRET, scratchDir } from './support.js';

const RSS_BOUND_KB = 200 * 1024;
const DAY_MS = 86_400_000;

const { values } = parseArgs({ options: { entries: { type: 'string', default: '1000000' } } });
const entries = Number(values.entries);
if (!Number.isInteger(entries) || entries <= 0) throw new Error(`--entries must be a positive whole number`);

const dir = scratchDir('online-stats-import-bench-');
try {
  const file = join(dir, 'users_data.json');
  // The demo's own format: distinct IPv4 addresses, datetime.utcnow().isoformat() times over a month.
  const out = createWriteStream(file);
  const nowMs = Date.now();
  out.write('{');
  for (let i = 0; i < entries; i++) {
    const time = new Date(nowMs - (i % 30) * DAY_MS).toISOString().replace('Z', '000');
    const line = `${i === 0 ? '' : ', '}"10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}": "${time}"`;
    if (!out.write(line)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  await new Promise<void>((resolve) => out.end('}', () => resolve()));
  const startedMs = performance.now();
  const run = spawnSync(
    '/usr/bin/time',
    ['-f', 'maxrss-kb %M', process.execPath, CLI, 'import', file, '--data-dir', join(dir, 'data')],
    { env: { ...process.env, IDENTITY_SECRET: SECRET }, encoding: 'utf8' },
  );
  const seconds = (performance.now() - startedMs) / 1000;
  const rssKb = Number(/maxrss-kb (\d+)/.exec(run.stderr)?.[1] ?? NaN);
  if (run.status !== 0) throw new Error(`import failed (${run.status}): ${run.stderr}`);
  const megabytes = (statSync(file).size / 1e6).toFixed(1);
  process.stdout.write(
    `${entries} entries (${megabytes} MB): ${seconds.toFixed(1)} s, peak RSS ${(rssKb / 1024).toFixed(0)} MB ` +
      `(bound ${RSS_BOUND_KB / 1024} MB: ${rssKb <= RSS_BOUND_KB ? 'ok' : 'FAIL'})\n`,
  );
  if (!(rssKb <= RSS_BOUND_KB)) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
