// Case 8: what the concurrency history costs: heartbeat CPU next to the build before it (SQLite and Redis),
// /analytics/concurrency with 1,000 channels online, and bytes on disk per series per day.
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createCalendar } from '../../src/calendar.js';
import {
  HOUR_BLOB_BYTES,
  HOUR_MS,
  MINUTE_MS,
  writeMinute,
  summarise,
  readMinutes,
} from '../../src/store/concurrency.js';
import { DATABASE_FILE, SqliteStore } from '../../src/store/sqlite.js';
import type { BenchContext } from '../context.js';
import { findWrk, wrkGets } from '../wrk.js';
import { load, meanOf, simulatedHeartbeats, type LoadResult } from '../load.js';
import { against, bytes, count, ms, ratio, type CaseReport, type Row } from '../report.js';
import { startRedis, type RedisServer } from '../../test/support/redis-server.js';
import { REPO_ROOT, cpuSeconds, redisCpuSeconds, scratchDir, startService, stop, type Listening } from '../support.js';

const WARM_UP_SECONDS = 2;
const ROUNDS = 2;
const CHANNELS = 1000;
const DAY_MS = 86_400_000;

interface Run extends LoadResult {
  serverCores: number;
  /** The service's redis-server's cores (0 on SQLite). */
  redisCores: number;
}

/** The newest commit before the one that added `path` (the history of a store): the same service without it. */
function baselineRevision(path: string): string {
  const added = execFileSync('git', ['log', '--format=%H', '--diff-filter=A', '-1', '--', path], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
  }).trim();
  if (added === '') throw new Error(`no commit added ${path}: nothing to compare with`);
  return `${added}^`;
}

/** `revision` built in a scratch worktree (with this checkout's node_modules); its CLI's path. */
function buildRevision(revision: string, log: (message: string) => void): { cli: string; remove(): void } {
  const dir = scratchDir('history-baseline');
  rmSync(dir, { recursive: true, force: true });
  execFileSync('git', ['worktree', 'add', '--detach', '--force', dir, revision], { cwd: REPO_ROOT, stdio: 'ignore' });
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  log(`case 8: building ${revision} in a scratch worktree`);
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: dir, stdio: 'ignore' });
  return {
    cli: join(dir, 'dist', 'src', 'cli.js'),
    remove: () => execFileSync('git', ['worktree', 'remove', '--force', dir], { cwd: REPO_ROOT, stdio: 'ignore' }),
  };
}

interface Variant {
  /** The file whose first commit added the history to this store. */
  addedIn: string;
  label: string;
  /** Arguments of both services; `redis` is that service's own Redis server, when the store is Redis. */
  args(dataDir: string, redis: RedisServer | null): string[];
  redis: boolean;
}

const VARIANTS: Variant[] = [
  {
    addedIn: 'src/store/concurrency.ts',
    label: 'SQLite',
    redis: false,
    args: (dataDir) => ['--data-dir', dataDir],
  },
  {
    addedIn: 'src/store/redis/history.ts',
    label: 'Redis',
    redis: true,
    args: (dataDir, redis) => ['--data-dir', dataDir, '--store', 'redis', '--redis-url', (redis as RedisServer).url],
  },
];

/** Heartbeat CPU per request of the service with the history and of the build before it, alternated. */
async function heartbeatCost(ctx: BenchContext, variant: Variant, rows: Row[], notes: string[]): Promise<void> {
  const revision = baselineRevision(variant.addedIn);
  const before = buildRevision(revision, ctx.log);
  const sequence = { next: 0 };
  const services: Listening[] = [];
  const redisServers: RedisServer[] = [];
  try {
    const redisOf = async () => {
      if (!variant.redis) return null;
      const redis = await startRedis();
      redisServers.push(redis);
      return redis;
    };
    const common = ['--trust-proxy', '127.0.0.1'];
    const onRedis = await redisOf();
    const withHistory = await startService([...variant.args(scratchDir('history-on'), onRedis), ...common]);
    services.push(withHistory);
    const offRedis = await redisOf();
    const without = await startService([...variant.args(scratchDir('history-off'), offRedis), ...common], {
      cli: before.cli,
    });
    services.push(without);
    const heartbeats = (target: Listening, seconds: number) =>
      simulatedHeartbeats(target.url, ctx.connections, seconds, sequence);
    const measured = async (target: Listening, redis: RedisServer | null): Promise<Run> => {
      const cpuBefore = cpuSeconds(target.process.pid);
      const redisBefore = redis === null ? 0 : await redisCpuSeconds(redis);
      const result = await heartbeats(target, ctx.durationSeconds);
      const redisCores = redis === null ? 0 : ((await redisCpuSeconds(redis)) - redisBefore) / result.seconds;
      return { ...result, serverCores: (cpuSeconds(target.process.pid) - cpuBefore) / result.seconds, redisCores };
    };
    await heartbeats(without, WARM_UP_SECONDS);
    await heartbeats(withHistory, WARM_UP_SECONDS);
    const on: Run[] = [];
    const off: Run[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      ctx.log(
        `case 8: ${variant.label}, round ${round} of ${ROUNDS}: without history, then with, ${ctx.durationSeconds} s each`,
      );
      off.push(await measured(without, offRedis));
      on.push(await measured(withHistory, onRedis));
    }
    const micros = (runs: readonly Run[], cores: (run: Run) => number) =>
      meanOf(runs, (run) => (cores(run) * 1e6) / Math.max(1, run.requestsPerSecond));
    const server = (run: Run) => run.serverCores;
    const rise = micros(on, server) / micros(off, server);
    const label = variant.label;
    rows.push(
      row(
        `${label}: heartbeats/s, before the history / with it`,
        `${count(meanOf(off, (r) => r.requestsPerSecond))} / ${count(meanOf(on, (r) => r.requestsPerSecond))}`,
      ),
      row(
        `${label}: server CPU per heartbeat, before / with`,
        `${micros(off, server).toFixed(1)} µs / ${micros(on, server).toFixed(1)} µs`,
      ),
      row(`${label}: CPU per heartbeat, with / before`, ratio(rise), '<= 1.03', against(rise, { max: 1.03 })),
    );
    if (variant.redis) {
      const inRedis = (run: Run) => run.redisCores;
      rows.push(
        row(
          'Redis: Redis CPU per heartbeat, before / with',
          `${micros(off, inRedis).toFixed(1)} µs / ${micros(on, inRedis).toFixed(1)} µs`,
        ),
      );
    }
    notes.push(
      `Heartbeat cost (${label}): the service at this commit next to ${revision} (the commit before the history was ` +
        `added to this store), built in a scratch worktree, both with production defaults` +
        (variant.redis ? ', each on a redis-server of its own (so its CPU is the service’s alone)' : '') +
        `; ${ctx.connections} connections, POST /heartbeat with X-Forwarded-For cycling over 131,072 addresses; ` +
        `warm-up ${WARM_UP_SECONDS} s each, then before, with, before, with (${ctx.durationSeconds} s each).`,
    );
  } finally {
    for (const service of services) await stop(service.process, 'SIGKILL');
    for (const redis of redisServers) await redis.stop();
    before.remove();
  }
}

/** 24 hours of minutes for the total and every channel, written as the store writes them. */
async function seedDay(dataDir: string, nowMs: number): Promise<void> {
  const store = SqliteStore.open(
    join(dataDir, DATABASE_FILE),
    {
      heartbeatTimeoutMs: 60_000,
      maxDays: 400,
      maxChannels: CHANNELS,
      calendar: createCalendar('UTC'),
      historyMinuteDays: 14,
    },
    nowMs,
  );
  await store.close();
  const db = new Database(join(dataDir, DATABASE_FILE));
  const insert = db.prepare(
    'INSERT INTO concurrency_hours (channel, hour_ms, max, max_at_ms, min, mean_sum, recorded, minutes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const firstHour = Math.floor((nowMs - DAY_MS) / HOUR_MS) * HOUR_MS;
  db.transaction(() => {
    for (const channel of ['', ...Array.from({ length: CHANNELS }, (_, n) => `ch-${n}`)])
      for (let hourMs = firstHour; hourMs < Math.floor(nowMs / HOUR_MS) * HOUR_MS; hourMs += HOUR_MS) {
        const blob = Buffer.alloc(HOUR_BLOB_BYTES);
        for (let minute = 0; minute < 60; minute++) {
          const startMs = hourMs + minute * MINUTE_MS;
          const base = 10 + ((minute * 7 + hourMs / HOUR_MS) % 50);
          writeMinute(blob, { startMs, max: base + 5, maxAtMs: startMs + 1234, min: base, mean: base + 2.5 });
        }
        const summary = summarise(readMinutes(blob, hourMs));
        insert.run(channel, hourMs, summary.max, summary.maxAtMs, summary.min, summary.meanSum, summary.recorded, blob);
      }
  })();
  db.close();
}

async function concurrencyReads(ctx: BenchContext, rows: Row[], notes: string[]): Promise<void> {
  const dataDir = scratchDir('history-reads');
  await seedDay(dataDir, Date.now());
  const service = await startService([
    '--data-dir',
    dataDir,
    '--max-channels',
    String(CHANNELS),
    '--read-rate-limit',
    'off',
    '--rate-limit',
    'off',
    '--address-rate-limit',
    'off',
  ]);
  try {
    // Everyone online on one of the 1,000 channels, 10 each.
    let n = 0;
    await load({
      url: service.url,
      connections: 8,
      amount: CHANNELS * 10,
      method: 'POST',
      path: '/heartbeat',
      headers: { 'content-type': 'application/json' },
      vary: () => {
        const i = n++;
        return { body: JSON.stringify({ client_id: `c-${i}`, channel: `ch-${i % CHANNELS}` }) };
      },
    });
    let c = 0;
    const reads = (connections: number, amount: number) =>
      load({
        url: service.url,
        connections,
        amount,
        method: 'GET',
        path: '/analytics/concurrency',
        vary: () => ({ path: `/analytics/concurrency?channel=ch-${c++ % CHANNELS}` }),
      });
    // wrk, when installed, runs in its own process: autocannon in this one shares its event loop and GC with the
    // timing of every answer.
    const wrk = findWrk();
    const prefix = '/analytics/concurrency?channel=ch-';
    const oneAtATime = () =>
      wrk === null
        ? reads(1, 3000)
        : wrkGets(wrk, service.url, 1, Math.max(5, ctx.durationSeconds / 2), prefix, CHANNELS);
    const many = (amount: number) =>
      wrk === null
        ? reads(ctx.connections, amount)
        : wrkGets(wrk, service.url, ctx.connections, ctx.durationSeconds, prefix, CHANNELS);
    await reads(1, 500);
    const unloaded = await oneAtATime();
    const loaded = await many(20_000);
    const cpuBefore = cpuSeconds(service.process.pid);
    const timed = await many(10_000);
    const cpuMicros = ((cpuSeconds(service.process.pid) - cpuBefore) * 1e6) / Math.max(1, timed.responses);
    rows.push(
      row(
        '/analytics/concurrency (24 h by minute), one at a time: p50 / p99',
        `${ms(unloaded.p50Ms)} / ${ms(unloaded.p99Ms)}`,
        '<= 5 ms',
        against(unloaded.p99Ms, { max: 5 }),
      ),
      row(
        `the same, ${ctx.connections} connections: reads/s, p99`,
        `${count(loaded.requestsPerSecond)}, ${ms(loaded.p99Ms)}`,
      ),
      row('server CPU per /analytics/concurrency', `${cpuMicros.toFixed(0)} µs`),
      row(
        'non-2xx',
        count(unloaded.non2xx + loaded.non2xx + timed.non2xx),
        '0',
        against(unloaded.non2xx + loaded.non2xx + timed.non2xx, { max: 0 }),
      ),
    );
    notes.push(
      `Reads: ${CHANNELS} channels online (10 identities each) over 24 hours of stored minutes for the total and every ` +
        'channel (1,441 points an answer); each request asks for another channel; read limits off; load from ' +
        (findWrk() === null ? 'autocannon in the bench process.' : 'wrk (one thread, its own process).'),
    );
  } finally {
    await stop(service.process, 'SIGKILL');
  }
}

/** Bytes of the history tables and their indexes, from SQLite's dbstat. */
function historyBytes(db: Database.Database): number {
  return db
    .prepare<[], number>(
      "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN ('concurrency_hours', 'concurrency_hours_by_hour', " +
        "'sqlite_autoindex_concurrency_hours_1', 'concurrency_peaks')",
    )
    .pluck()
    .get() as number;
}

/** A day of 100 busy channels through the store itself (a change every few seconds on each), then measured. */
async function bytesPerDay(rows: Row[], notes: string[]): Promise<void> {
  const dataDir = scratchDir('history-size');
  const channels = 100;
  const startMs = Date.UTC(2026, 2, 10);
  const path = join(dataDir, DATABASE_FILE);
  const store = SqliteStore.open(
    path,
    {
      heartbeatTimeoutMs: 30_000,
      maxDays: 400,
      maxChannels: channels,
      calendar: createCalendar('UTC'),
      historyMinuteDays: 14,
    },
    startMs,
  );
  let identity = 0;
  for (let t = startMs; t < startMs + DAY_MS; t += 10_000) {
    const beats = Array.from({ length: channels }, (_, c) => ({
      identity: `id-${identity++ % 50_000}`,
      channel: `ch-${c}`,
    }));
    await store.recordHeartbeats(beats, t);
    if (t % MINUTE_MS === 0) await store.settle(t);
  }
  await store.settle(startMs + DAY_MS + MINUTE_MS);
  await store.close();
  const db = new Database(path);
  try {
    const series = channels + 1;
    const withMinutes = historyBytes(db) / series;
    db.exec('UPDATE concurrency_hours SET minutes = NULL; VACUUM');
    const hoursOnly = historyBytes(db) / series;
    rows.push(
      row('history on disk per series per day, minutes kept', bytes(withMinutes)),
      row('the same once the minutes are dropped (hours only)', bytes(hoursOnly)),
    );
    notes.push(
      `Size: ${channels} channels each with a change every 10 s for a whole day (${count(series * 24)} hour rows), through ` +
        'the store; bytes from SQLite dbstat (pages of the history tables and their indexes), per series (channels + total).',
    );
  } finally {
    db.close();
    if (existsSync(dataDir)) rmSync(dataDir, { recursive: true, force: true });
  }
}

const row = (measure: string, value: string, target = '', verdict: Row['verdict'] = 'info'): Row => ({
  case: '8 history',
  measure,
  value,
  target,
  verdict,
});

export async function historyCase(ctx: BenchContext): Promise<CaseReport> {
  const rows: Row[] = [];
  const notes: string[] = [];
  await bytesPerDay(rows, notes);
  await concurrencyReads(ctx, rows, notes);
  for (const variant of VARIANTS) await heartbeatCost(ctx, variant, rows, notes);
  return { title: 'Case 8: the concurrency history', rows, notes };
}
