// Case 10: per-user presence at 1M known identities (a 1,000-id POST /presence, one at a time), and the retention
// purge of about a million expired identities while heartbeats come in (their p99 with and without it).
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { DATABASE_FILE } from '../../src/store/sqlite.js';
import type { BenchContext } from '../context.js';
import { load, type LoadResult } from '../load.js';
import { against, count, ms, type CaseReport, type Row } from '../report.js';
import { seedDataDir } from '../seed.js';
import { SECRET, cpuSeconds, scratchDir, sleep, startService, stop } from '../support.js';
import { findWrk, wrkHeartbeats } from '../wrk.js';

const TOKEN = 'presence-benchmark-token-0123456789abcdef';
const LOOKUPS = 1000;
const IDS_PER_LOOKUP = 1000;
/** Heartbeats while the purge runs: fewer connections than case 1's, so the p99 is the service's, not a queue's. */
const PURGE_CONNECTIONS = 8;
/** The store looks for expired identities a minute after it starts (by the clock), then in batches between folds. */
const PURGE_STARTS_AFTER_MS = 60_000;

const row = (measure: string, value: string, target = '', verdict: Row['verdict'] = 'info'): Row => ({
  case: '10 presence and retention',
  measure,
  value,
  target,
  verdict,
});

/** 1,000 ids per request: nine in ten seeded (known), one in ten never seen, different for every request. */
function lookupBody(n: number, known: number): string {
  const ids: string[] = [];
  for (let k = 0; k < IDS_PER_LOOKUP; k++) {
    const i = (n * IDS_PER_LOOKUP + k) * 7919;
    ids.push(k % 10 === 9 ? `unknown-${i}` : `client-${i % known}`);
  }
  return JSON.stringify({ client_ids: ids });
}

async function lookups(ctx: BenchContext, known: number): Promise<{ result: LoadResult; cpuMicros: number }> {
  const dataDir = await ctx.seeds.get(known, Math.floor(known / 10));
  const service = await startService([
    '--data-dir',
    dataDir,
    '--api-token',
    TOKEN,
    '--presence-rate-limit',
    'off',
    '--address-rate-limit',
    'off',
  ]);
  try {
    let n = 0;
    const spec = {
      url: service.url,
      connections: 1,
      method: 'POST' as const,
      path: '/presence',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      vary: () => ({ body: lookupBody(n++, known) }),
    };
    await load({ ...spec, amount: 100 });
    const cpuBefore = cpuSeconds(service.process.pid);
    const result = await load({ ...spec, amount: LOOKUPS });
    const cpuMicros = ((cpuSeconds(service.process.pid) - cpuBefore) * 1e6) / Math.max(1, result.responses);
    return { result, cpuMicros };
  } finally {
    await stop(service.process);
  }
}

interface PurgeFigures {
  before: LoadResult;
  during: LoadResult;
  purgedDuring: number;
  seconds: number | null;
  left: number;
  expired: number;
}

const DAY_MS = 86_400_000;

async function purge(ctx: BenchContext, known: number, wrk: string): Promise<PurgeFigures> {
  const dataDir = scratchDir('purge');
  const seededMs = Date.now();
  // 1% online, the rest spread over the 60 days before: with --retention-days 1, all but about 1.7% are expired.
  await seedDataDir(dataDir, { known, online: Math.floor(known / 100), secret: SECRET, nowMs: seededMs }, ctx.log);
  const db = new Database(join(dataDir, DATABASE_FILE), { readonly: true });
  const olderThan = db.prepare<[number], number>('SELECT COUNT(*) FROM identities WHERE last_seen_ms < ?').pluck();
  // Past the retention by a minute at least, whatever the moment of the count: what the purge must have deleted.
  const expiredNow = () => olderThan.get(Date.now() - DAY_MS - 60_000) as number;
  const expired = expiredNow();
  const service = await startService([
    '--data-dir',
    dataDir,
    '--trust-proxy',
    '127.0.0.1',
    '--retention-days',
    '1',
    '--rate-limit',
    'off',
    '--address-rate-limit',
    'off',
  ]);
  const startedMs = Date.now();
  const sequence = { next: 0 };
  try {
    ctx.log('case 10: heartbeats before the purge starts');
    await wrkHeartbeats(wrk, service.url, PURGE_CONNECTIONS, 5, sequence);
    const before = await wrkHeartbeats(wrk, service.url, PURGE_CONNECTIONS, 20, sequence);
    await sleep(Math.max(0, startedMs + PURGE_STARTS_AFTER_MS + 2000 - Date.now()));
    ctx.log('case 10: heartbeats while the purge runs');
    const expiredBefore = expiredNow();
    const during = await wrkHeartbeats(wrk, service.url, PURGE_CONNECTIONS, 30, sequence);
    const purgedDuring = expiredBefore - expiredNow();
    ctx.log('case 10: waiting for the purge to finish');
    const deadline = Date.now() + 300_000;
    let seconds: number | null = null;
    let left = expiredNow();
    while (Date.now() < deadline) {
      left = expiredNow();
      // Done once what is left is less than a batch: those that expired since the last look (a minute's worth).
      if (left < 1000) {
        seconds = (Date.now() - startedMs - PURGE_STARTS_AFTER_MS) / 1000;
        break;
      }
      await sleep(500);
    }
    return { before, during, purgedDuring, seconds, left, expired };
  } finally {
    db.close();
    await stop(service.process);
  }
}

export async function presenceCase(ctx: BenchContext): Promise<CaseReport> {
  const known = ctx.known;
  ctx.log(`case 10: ${count(known)} known: POST /presence of ${IDS_PER_LOOKUP} ids, one at a time`);
  const { result, cpuMicros } = await lookups(ctx, known);
  const rows: Row[] = [
    row(
      `POST /presence, ${IDS_PER_LOOKUP} ids, ${count(known)} known, one connection: p50 / p99`,
      `${ms(result.p50Ms)} / ${ms(result.p99Ms)} (${result.ok} of ${result.responses} ok)`,
      'p99 <= 5 ms',
      result.ok === result.responses ? against(result.p99Ms, { max: 5 }) : 'FAIL',
    ),
    row(
      'POST /presence: server CPU per lookup, and per id',
      `${count(cpuMicros)} µs, ${(cpuMicros / IDS_PER_LOOKUP).toFixed(2)} µs`,
    ),
  ];
  const wrk = findWrk();
  if (wrk === null) {
    rows.push(row('retention purge', 'not measured: wrk is not installed (apt-get install wrk)'));
    return { title: 'Case 10: per-user presence and the retention purge', rows, notes: [] };
  }
  const figures = await purge(ctx, known, wrk);
  rows.push(
    row(
      `heartbeats (${PURGE_CONNECTIONS} connections) before the purge: rate, p50 / p99`,
      `${count(figures.before.okPerSecond)}/s, ${ms(figures.before.p50Ms)} / ${ms(figures.before.p99Ms)}`,
    ),
    row(
      `heartbeats (${PURGE_CONNECTIONS} connections) while ${count(figures.expired)} expired identities are purged: rate, p50 / p99`,
      `${count(figures.during.okPerSecond)}/s, ${ms(figures.during.p50Ms)} / ${ms(figures.during.p99Ms)}`,
      'p99 <= 10 ms',
      against(figures.during.p99Ms, { max: 10 }),
    ),
    row(
      'identities purged while the heartbeats ran (30 s)',
      `${count(figures.purgedDuring)} (${count(figures.purgedDuring / 30)}/s)`,
    ),
    row(
      'the whole purge, from its start',
      figures.seconds === null
        ? `not done in 300 s (${count(figures.left)} expired left)`
        : `${figures.seconds.toFixed(0)} s (${count(figures.expired / figures.seconds)}/s)`,
    ),
  );
  return {
    title: 'Case 10: per-user presence and the retention purge',
    rows,
    notes: [
      'Lookups: 9 in 10 ids known (seeded), 1 in 10 never seen; each request names different ids.',
      `Purge: ${count(known)} seeded, last seen spread over 60 days, --retention-days 1; the store looks for ` +
        'expired identities a minute after it starts, then deletes 1,000 per fold request (every 200 ms) on the ' +
        "fold's thread.",
    ],
  };
}
