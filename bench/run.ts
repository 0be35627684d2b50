// `npm run bench`: runs the benchmark cases against the built service on 127.0.0.1 and prints one Markdown table per
// case.
//
//   npm run bench -- [--duration 10] [--connections 32] [--known 1000000] [--only 1,2,5] [--profile <dir>]
//
// A report, not a test: it exits 0 when a target fails (the verdict says FAIL), and non-zero only
// when the benchmark itself broke. Every process it starts is killed and every file removed on exit.
import { existsSync, mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { alertsCase } from './cases/alerts.js';
import { analyticsCase } from './cases/analytics.js';
import { batchCase } from './cases/batch.js';
import { heartbeatCase } from './cases/heartbeat.js';
import { historyCase } from './cases/history.js';
import { memoryCase } from './cases/memory.js';
import { peerCase } from './cases/peer.js';
import { presenceCase } from './cases/presence.js';
import { readsCase } from './cases/reads.js';
import { restartCase } from './cases/restart.js';
import type { BenchContext } from './context.js';
import { printCase, type CaseReport } from './report.js';
import { SeededDirs } from './seed.js';
import { CLI, SECRET, scratchDir } from './support.js';

const CASES: Record<number, (ctx: BenchContext) => Promise<CaseReport>> = {
  1: heartbeatCase,
  2: readsCase,
  3: memoryCase,
  4: restartCase,
  5: batchCase,
  6: peerCase,
  7: analyticsCase,
  8: historyCase,
  9: alertsCase,
  10: presenceCase,
};

const USAGE =
  'usage: node --import tsx bench/run.ts [--duration <s>] [--connections <n>] [--known <n>] [--only 1,2,5] [--profile <dir>]';

function usageError(message: string): never {
  process.stderr.write(`bench: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function positive(name: string, text: string, integer: boolean): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value)))
    usageError(`--${name} must be a positive ${integer ? 'whole ' : ''}number (got ${text})`);
  return value;
}

function atLeast(name: string, value: number, min: number): number {
  if (value < min) usageError(`--${name} must be at least ${min} (got ${value})`);
  return value;
}

const OPTIONS = {
  duration: { type: 'string', default: '10' },
  connections: { type: 'string', default: '32' },
  known: { type: 'string', default: '1000000' },
  only: { type: 'string', default: Object.keys(CASES).join(',') },
  profile: { type: 'string' },
} as const;

function parseFlags(argv: readonly string[]) {
  const parse = () => {
    try {
      return parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false }).values;
    } catch (error) {
      return usageError((error as Error).message);
    }
  };
  const values = parse();
  const only = values.only.split(',').map((part) => Number(part.trim()));
  const unknown = only.filter((n) => CASES[n] === undefined);
  if (unknown.length > 0) usageError(`--only names no such case: ${unknown.join(', ')} (cases are 1 to 10)`);
  return {
    durationSeconds: positive('duration', values.duration, false),
    connections: positive('connections', values.connections, true),
    known: atLeast('known', positive('known', values.known, true), 1000),
    only: [...new Set(only)].sort((a, b) => a - b),
    profileDir: values.profile === undefined ? null : resolve(values.profile),
  };
}

const flags = parseFlags(process.argv.slice(2));
if (!existsSync(CLI)) usageError(`${CLI} is missing: run \`npm run build\` first (npm run bench does)`);
if (flags.profileDir !== null) mkdirSync(flags.profileDir, { recursive: true });

// Ctrl-C or a kill: exit through the 'exit' hook of support.ts, which kills the children and removes the files.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

const log = (message: string) => process.stderr.write(`${message}\n`);
const ctx: BenchContext = { ...flags, log, seeds: new SeededDirs(scratchDir, SECRET, log) };
const processors = cpus();
const startedMs = performance.now();
process.stdout.write(
  [
    '## online-stats benchmarks',
    '',
    `- date: ${new Date().toISOString()}`,
    `- CPU: ${processors[0]?.model.trim() ?? 'unknown'} × ${processors.length}; load average at start ${loadavg()
      .map((load) => load.toFixed(2))
      .join(' ')}`,
    `- Node.js ${process.version}`,
    `- command: ${[process.execPath, ...process.execArgv, ...process.argv.slice(1)].join(' ')}`,
    '',
    '',
  ].join('\n'),
);

let broken = 0;
for (const n of flags.only) {
  const run = CASES[n] as (ctx: BenchContext) => Promise<CaseReport>;
  const caseStartedMs = performance.now();
  try {
    process.stdout.write(`${printCase(await run(ctx))}\n`);
  } catch (error) {
    broken++;
    process.stdout.write(`### Case ${n}: broke\n\n\`\`\`\n${(error as Error).stack ?? String(error)}\n\`\`\`\n\n`);
  }
  log(`case ${n} took ${((performance.now() - caseStartedMs) / 1000).toFixed(0)} s`);
}
process.stdout.write(
  `Total time: ${((performance.now() - startedMs) / 1000).toFixed(0)} s${broken > 0 ? `; ${broken} case(s) broke` : ''}\n`,
);
process.exit(broken > 0 ? 1 : 0);
