// Case 7: /analytics/daily over a year of dense sketches: its latency, and what it does to bystanders' heartbeats.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { shiftDay } from '../../src/calendar.js';
import { HLL_REGISTERS, hllAdd } from '../../src/store/hll.js';
import { DATABASE_FILE } from '../../src/store/sqlite.js';
import type { BenchContext } from '../context.js';
import { get, load, simulatedAddress, type LoadResult } from '../load.js';
import { against, count, ms, ratio, type CaseReport, type Row } from '../report.js';
import { cpuSeconds, scratchDir, sleep, startService, stop } from '../support.js';

const RANGE_DAYS = 366;
/** Seeded days: the range and the 29 days before it that its first monthly windows reach. */
const SEEDED_DAYS = RANGE_DAYS + 29;
/** Distinct identities in each day's sketch: a busy service's day. */
const DAILY_ACTIVES = 40_000;
const READERS = 6;
const HEARTBEAT_CONNECTIONS = 4;
const BURST_EVERY_MS = 500;

/** A data directory whose last year (ending yesterday, UTC) has a dense HyperLogLog sketch per day. */
function seedYear(dataDir: string, today: string): void {
  const db = new Database(join(dataDir, DATABASE_FILE));
  try {
    db.exec(readFileSync(new URL('../../src/store/sqlite/schema.sql', import.meta.url), 'utf8'));
    const insert = db.prepare('INSERT INTO day_sketches (day, sketch) VALUES (?, ?)');
    const counts = db.prepare('INSERT OR REPLACE INTO daily_activity (day, active, new) VALUES (?, ?, ?)');
    db.transaction(() => {
      for (let n = 1; n <= SEEDED_DAYS; n++) {
        const registers = new Uint8Array(HLL_REGISTERS);
        const ids = randomBytes(16 * DAILY_ACTIVES);
        for (let i = 0; i < DAILY_ACTIVES; i++) hllAdd(registers, ids.toString('latin1', 16 * i, 16 * i + 16));
        insert.run(shiftDay(today, -n), Buffer.from(registers));
        counts.run(shiftDay(today, -n), DAILY_ACTIVES, DAILY_ACTIVES / 20);
      }
    })();
  } finally {
    db.close();
  }
}

export async function analyticsCase(ctx: BenchContext): Promise<CaseReport> {
  const dataDir = scratchDir('analytics');
  const today = new Date().toISOString().slice(0, 10);
  ctx.log(`case 7: seeding ${SEEDED_DAYS} days of sketches of ${count(DAILY_ACTIVES)} identities`);
  seedYear(dataDir, today);
  const service = await startService([
    '--data-dir',
    dataDir,
    '--trust-proxy',
    '127.0.0.1',
    '--read-rate-limit',
    'off',
    '--rate-limit',
    'off',
    '--address-rate-limit',
    'off',
  ]);
  const path = `/analytics/daily?from=${shiftDay(today, -(RANGE_DAYS - 1))}&to=${today}`;
  try {
    const pid = service.process.pid;
    // The first read after start merges every window: nothing is cached yet.
    let cpuBefore = cpuSeconds(pid);
    const startedMs = performance.now();
    const first = await get(`${service.url}${path}`, 60_000);
    const coldMs = performance.now() - startedMs;
    const coldCpuMs = (cpuSeconds(pid) - cpuBefore) * 1000;
    if (first.status !== 200) throw new Error(`${path} answered ${first.status}: ${first.body}`);

    let next = 0;
    const heartbeats = (seconds: number): Promise<LoadResult> =>
      load({
        url: service.url,
        connections: HEARTBEAT_CONNECTIONS,
        seconds,
        method: 'POST',
        path: '/heartbeat',
        vary: () => ({ headers: { 'x-forwarded-for': simulatedAddress(next++) } }),
      });
    const reads = (seconds: number, connections: number): Promise<LoadResult> =>
      load({ url: service.url, connections, seconds, method: 'GET', path });
    /** Six reads at once, every BURST_EVERY_MS, for `seconds`: the audit's "six at once". */
    const bursts = async (seconds: number): Promise<{ reads: number; failed: number; worstMs: number }> => {
      const endMs = performance.now() + seconds * 1000;
      let done = 0;
      let failed = 0;
      let worstMs = 0;
      while (performance.now() < endMs) {
        const tickMs = performance.now();
        const answers = await Promise.all(
          Array.from({ length: READERS }, async () => {
            const sentMs = performance.now();
            const answer = await get(`${service.url}${path}`, 30_000);
            worstMs = Math.max(worstMs, performance.now() - sentMs);
            return answer;
          }),
        );
        done += answers.length;
        failed += answers.filter((answer) => answer.status !== 200).length;
        await sleep(Math.max(0, BURST_EVERY_MS - (performance.now() - tickMs)));
      }
      return { reads: done, failed, worstMs };
    };

    ctx.log(`case 7: warm-up 2 s, then four runs of ${ctx.durationSeconds} s`);
    await Promise.all([heartbeats(2), reads(2, READERS)]);
    cpuBefore = cpuSeconds(pid);
    const readsAlone = await reads(ctx.durationSeconds, 1);
    const cpuPerRead = ((cpuSeconds(pid) - cpuBefore) * 1000) / readsAlone.ok;
    const alone = await heartbeats(ctx.durationSeconds);
    const [beside, burst] = await Promise.all([heartbeats(ctx.durationSeconds), bursts(ctx.durationSeconds)]);
    cpuBefore = cpuSeconds(pid);
    const [besideFlood, flood] = await Promise.all([
      heartbeats(ctx.durationSeconds),
      reads(ctx.durationSeconds, READERS),
    ]);
    const floodCores = (cpuSeconds(pid) - cpuBefore) / flood.seconds;

    const row = (measure: string, value: string, target = '', verdict: Row['verdict'] = 'info'): Row => ({
      case: '7 analytics over a year',
      measure,
      value,
      target,
      verdict,
    });
    const failures =
      readsAlone.non2xx + alone.non2xx + beside.non2xx + burst.failed + besideFlood.non2xx + flood.non2xx;
    return {
      title: 'Case 7: /analytics/daily over a year of dense sketches',
      rows: [
        row('first read after start (no window cached): latency / server CPU', `${ms(coldMs)} / ${ms(coldCpuMs)}`),
        row(
          'one reader: reads/s, p50 / p99',
          `${count(readsAlone.okPerSecond)}, ${ms(readsAlone.p50Ms)} / ${ms(readsAlone.p99Ms)}`,
          'p99 <= 20 ms',
          against(readsAlone.p99Ms, { max: 20 }),
        ),
        row('server CPU per read', ms(cpuPerRead)),
        row(
          'heartbeats alone: heartbeats/s, p50 / p99',
          `${count(alone.okPerSecond)}, ${ms(alone.p50Ms)} / ${ms(alone.p99Ms)}`,
        ),
        row(
          `heartbeats while ${READERS} reads run at once every ${BURST_EVERY_MS} ms: p50 / p99`,
          `${ms(beside.p50Ms)} / ${ms(beside.p99Ms)}`,
          'p99 < 10 ms',
          against(beside.p99Ms, { max: 9.999 }),
        ),
        row('those bursts: reads, slowest read', `${count(burst.reads)}, ${ms(burst.worstMs)}`),
        row(
          `worst case, rate limits off: heartbeats beside ${READERS} readers reading back to back: p50 / p99`,
          `${ms(besideFlood.p50Ms)} / ${ms(besideFlood.p99Ms)}`,
        ),
        row(
          'that flood: reads/s, read p99, server CPU in cores',
          `${count(flood.okPerSecond)}, ${ms(flood.p99Ms)}, ${ratio(floodCores)}`,
        ),
        row('non-2xx', count(failures), '0', against(failures, { max: 0 })),
      ],
      notes: [
        `${count(SEEDED_DAYS)} days before today, each a sketch of ${count(DAILY_ACTIVES)} random identities; GET ${path.replace(/\d{4}-\d{2}-\d{2}/g, 'D')} ` +
          `(${RANGE_DAYS} days); POST /heartbeat on ${HEARTBEAT_CONNECTIONS} connections, each request a new address ` +
          `through X-Forwarded-For; all rate limits off so that only the service's own cost shows. ${ctx.durationSeconds} s per run.`,
      ],
    };
  } finally {
    await stop(service.process);
  }
}
