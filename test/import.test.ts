// `online-stats import`: the demo's users_data.json moves over whole, idempotently, or not at all.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { buildApp } from '../src/app.js';
import { createCalendar } from '../src/calendar.js';
import { ManualClock, systemClock } from '../src/clock.js';
import { defaultConfig } from '../src/config.js';
import { secretFingerprint } from '../src/identity.js';
import { storeOptions } from '../src/open-store.js';
import { RedisStore } from '../src/store/redis.js';
import { DATABASE_FILE, SqliteStore } from '../src/store/sqlite.js';
import { importDemoFile, parseDemoTime } from '../src/import.js';
import { SECRET, runCli, tempDir } from './support/app.js';
import { startRedis, type RedisServer } from './support/redis-server.js';

const NOW = Date.now();
const iso = (ms: number) =>
  new Date(ms)
    .toISOString()
    .replace('Z', '')
    .replace(/\.(\d{3})$/, '.$1456'); // utcnow().isoformat()
const DAY = 86_400_000;
const CLI = fileURLToPath(new URL('../dist/src/cli.js', import.meta.url));
const TIME = '/usr/bin/time';

/** Writes a demo file of `count` distinct IPv4 users, streamed, so the test itself stays small too. */
async function writeLargeFile(path: string, count: number): Promise<void> {
  const out = createWriteStream(path);
  out.write('{');
  for (let i = 0; i < count; i++) {
    const line = `${i === 0 ? '' : ', '}"10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}": "${iso(NOW - (i % 30) * DAY)}"`;
    if (!out.write(line)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  await new Promise<void>((resolve) => out.end('}', () => resolve()));
}

/** Runs the built CLI under /usr/bin/time (when there), noting when each stderr line arrived. */
function runTimed(args: readonly string[], env: Record<string, string>) {
  const timed = existsSync(TIME);
  const command = timed ? TIME : process.execPath;
  const argv = timed ? ['-f', 'maxrss-kb %M', process.execPath, CLI, ...args] : [CLI, ...args];
  return new Promise<{
    code: number;
    stdout: string;
    lines: { atMs: number; text: string }[];
    maxRssKb: number | null;
  }>((resolve) => {
    const child = spawn(command, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: { atMs: number; text: string }[] = [];
    let stdout = '';
    let partial = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop() ?? '';
      for (const text of parts) lines.push({ atMs: performance.now(), text });
    });
    child.once('close', (code) => {
      const rss = lines.map(({ text }) => /^maxrss-kb (\d+)/.exec(text)).find((match) => match !== null);
      resolve({ code: code ?? -1, stdout, lines, maxRssKb: rss ? Number(rss[1]) : null });
    });
  });
}

/** Opens the imported data as the service would, at the real time, and asks the API. */
async function ask(
  dataDir: string,
  fn: (inject: (url: string, address?: string) => Promise<Record<string, number>>) => Promise<void>,
) {
  const clock = new ManualClock(NOW + 1000);
  const config = defaultConfig({ dataDir, logLevel: 'silent', ingestRateLimit: null, readRateLimit: null });
  const store = SqliteStore.open(join(dataDir, DATABASE_FILE), storeOptions(config), clock.nowMs());
  const app = await buildApp({ config, store, clock, identitySecret: SECRET, logger: false });
  try {
    await fn(async (url, address) => {
      const res = await app.inject({
        method: url === '/heartbeat' ? 'POST' : 'GET',
        url,
        remoteAddress: address ?? '127.0.0.1',
      });
      assert.equal(res.statusCode, 200, res.body);
      return res.json();
    });
  } finally {
    await app.close();
    await store.close();
  }
}

describe('import of the demo data file', () => {
  const dir = tempDir();
  const env = { IDENTITY_SECRET: SECRET };
  const file = join(dir.path, 'users_data.json');
  const dataDir = join(dir.path, 'data');
  before(() => {
    writeFileSync(
      file,
      JSON.stringify({
        '203.0.113.1': iso(NOW - 2 * 60_000), // online now
        '203.0.113.2': iso(NOW - 3 * DAY),
        '2001:db8::1': iso(NOW - 20 * DAY),
        '::ffff:198.51.100.9': iso(NOW - 60 * DAY),
      }),
    );
  });
  after(() => dir.remove());

  it('reads the times the demo wrote (naive UTC, microseconds)', () => {
    assert.equal(parseDemoTime('2026-11-25T04:05:06.123456'), Date.UTC(2026, 10, 25, 4, 5, 6, 123));
    assert.equal(parseDemoTime('2026-11-25T04:05:06'), Date.UTC(2026, 10, 25, 4, 5, 6));
    assert.equal(parseDemoTime('2026-11-25T04:05:06+01:00'), Date.UTC(2026, 10, 25, 3, 5, 6));
    assert.equal(parseDemoTime('yesterday'), null);
  });

  it('imports every user, who then count in total_users and online_clients', async () => {
    const result = await runCli(['import', file, '--data-dir', dataDir], env);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /imported 4 users/);
    await ask(dataDir, async (get) => {
      assert.equal((await get('/online_clients')).online_clients_count, 1);
      assert.equal((await get('/total_users?days=7')).recent_users_count, 2);
      assert.equal((await get('/total_users?days=30')).recent_users_count, 3);
      assert.equal((await get('/total_users?days=90')).recent_users_count, 4);
      // The same address heartbeating now is the same user, not a new one.
      await get('/heartbeat', '2001:db8::1');
      await get('/heartbeat', '198.51.100.9');
      assert.equal((await get('/total_users?days=90')).recent_users_count, 4);
      assert.equal((await get('/online_clients')).online_clients_count, 3);
    });
  });

  it('is idempotent: importing again changes nothing, and never moves last-seen back', async () => {
    const result = await runCli(['import', file, '--data-dir', dataDir], env);
    assert.equal(result.code, 0, result.stderr);
    await ask(dataDir, async (get) => {
      assert.equal((await get('/total_users?days=90')).recent_users_count, 4);
      assert.equal(
        (await get('/total_users?days=7')).recent_users_count,
        4,
        'the two that beat after the first import keep their newer time',
      );
    });
  });

  it('a bad entry stops the import with a message naming it, and nothing is written', async () => {
    const bad = join(dir.path, 'bad.json');
    const cases: [string, RegExp][] = [
      [JSON.stringify({ '203.0.113.50': iso(NOW), 'not-an-ip': iso(NOW) }), /not-an-ip/],
      [JSON.stringify({ '203.0.113.51': iso(NOW), '203.0.113.52': 'last tuesday' }), /203\.0\.113\.52/],
      [JSON.stringify({ '203.0.113.53': iso(NOW + 30 * DAY) }), /future/],
      [JSON.stringify(['203.0.113.54']), /object/],
      ['{"203.0.113.55": ', /JSON/],
    ];
    for (const [text, message] of cases) {
      writeFileSync(bad, text);
      const result = await runCli(['import', bad, '--data-dir', dataDir], env);
      assert.equal(result.code, 1, text);
      assert.match(result.stderr, message);
    }
    await ask(dataDir, async (get) => assert.equal((await get('/total_users?days=90')).recent_users_count, 4));
  });

  it('a missing file name is a usage error (exit 2)', async () => {
    const result = await runCli(['import', '--data-dir', dataDir], env);
    assert.equal(result.code, 2);
  });

  it('a missing file, a directory and an unreadable file are each named for what they are', async () => {
    const missing = await runCli(['import', join(dir.path, 'nope.json'), '--data-dir', dataDir], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope\.json: no such file/);
    assert.doesNotMatch(missing.stderr, /JSON:/);
    const folder = join(dir.path, 'a-folder');
    mkdirSync(folder, { recursive: true });
    const directory = await runCli(['import', folder, '--data-dir', dataDir], env);
    assert.equal(directory.code, 1);
    assert.match(directory.stderr, /a-folder is a directory/);
    // Root reads any file whatever its mode, so the refusal is only seen as another user.
    if (process.getuid?.() !== 0) {
      const locked = join(dir.path, 'locked.json');
      writeFileSync(locked, '{}', { mode: 0o000 });
      const unreadable = await runCli(['import', locked, '--data-dir', dataDir], env);
      assert.equal(unreadable.code, 1);
      assert.match(unreadable.stderr, /locked\.json: permission denied/);
    }
  });

  it('writes progress lines with a rate and the time left, at the interval asked for', async () => {
    const medium = join(dir.path, 'medium.json');
    await writeLargeFile(medium, 30_000);
    const lines: string[] = [];
    const config = defaultConfig({ dataDir: join(dir.path, 'medium-data'), identitySecret: SECRET });
    const count = await importDemoFile(medium, config, systemClock, {
      progress: (line) => lines.push(line),
      progressIntervalMs: 10,
    });
    assert.equal(count, 30_000);
    assert.ok(lines.some((line) => /^checked 30000 entries/.test(line)));
    const progress = lines.filter((line) => /^(checking|imported) /.test(line));
    assert.ok(progress.length >= 2, lines.join('\n'));
    for (const line of progress) assert.match(line, /\(\d+%\), \d+\/s, (about \d+ s left|time left unknown yet)$/);
  });

  it('on a large file, the real command reports at least every second, with bounded memory', async () => {
    const large = join(dir.path, 'large.json');
    await writeLargeFile(large, 250_000);
    const startedMs = performance.now();
    const result = await runTimed(['import', large, '--data-dir', join(dir.path, 'large-data')], env);
    const endedMs = performance.now();
    assert.equal(result.code, 0, result.lines.map(({ text }) => text).join('\n'));
    assert.match(result.stdout, /imported 250000 users/);
    const progress = result.lines.filter(({ text }) => /^(checking|imported) .*\/s, about \d+ s left$/.test(text));
    assert.ok(endedMs - startedMs > 1500, `took ${Math.round(endedMs - startedMs)} ms: too short to show progress`);
    assert.ok(progress.length >= 1, result.lines.map(({ text }) => text).join('\n'));
    // No silence longer than about a second, from the start to the end (a little slack for a loaded machine).
    const times = [startedMs, ...result.lines.map(({ atMs }) => atMs), endedMs];
    for (let i = 1; i < times.length; i++)
      assert.ok(times[i]! - times[i - 1]! < 1600, `${Math.round(times[i]! - times[i - 1]!)} ms without a line`);
    if (result.maxRssKb !== null) assert.ok(result.maxRssKb < 200 * 1024, `peak RSS ${result.maxRssKb} KB`);
  });
});

describe('import into Redis', () => {
  const dir = tempDir();
  let server: RedisServer;
  const file = join(dir.path, 'users_data.json');
  before(async () => {
    server = await startRedis();
    writeFileSync(file, JSON.stringify({ '203.0.113.1': iso(NOW - 2 * 60_000), '203.0.113.2': iso(NOW - 3 * DAY) }));
  });
  after(async () => {
    await server?.stop();
    dir.remove();
  });

  it('--store redis writes the shared store (not a local file), idempotently', async () => {
    const args = ['import', file, '--store', 'redis', '--redis-url', server.url, '--redis-prefix', 'imp:'];
    const dataDir = join(dir.path, 'data');
    for (let run = 0; run < 2; run++) {
      const result = await runCli([...args, '--data-dir', dataDir], { IDENTITY_SECRET: SECRET });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /imported 2 users .* into redis \(key prefix "imp:"\)/);
    }
    assert.equal(existsSync(join(dataDir, DATABASE_FILE)), false, 'no SQLite file was written');
    const options = { ...storeOptions(defaultConfig()), calendar: createCalendar('UTC') };
    const store = await RedisStore.open(
      { url: server.url, prefix: 'imp:', shards: 16, secretFingerprint: secretFingerprint(SECRET) },
      options,
    );
    try {
      assert.equal(await store.countOnline(NOW + 1000), 1);
      assert.equal(await store.countActive(NOW - 7 * DAY, NOW + 1000), 2);
    } finally {
      await store.close();
    }
  });

  it('--store redis without the shared identity secret is refused, naming the setting (exit 2)', async () => {
    const result = await runCli(['import', file, '--store', 'redis', '--redis-url', server.url], {
      IDENTITY_SECRET: '',
    });
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /--identity-secret/);
  });
});
