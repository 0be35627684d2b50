// Case 2: reads at 10k, 100k and 1M known identities, over HTTP and as in-process query costs that must not grow with
// users.
import { join } from 'node:path';
import { defaultConfig } from '../../src/config.js';
import { storeOptions } from '../../src/open-store.js';
import { DATABASE_FILE, SqliteStore } from '../../src/store/sqlite.js';
import type { BenchContext } from '../context.js';
import { load, type LoadResult } from '../load.js';
import { against, bytes, count, ms, ratio, type CaseReport, type Row } from '../report.js';
import { rssBytes, startService, stop } from '../support.js';

const SIZES = [10_000, 100_000, 1_000_000];
const PATHS = ['/online_clients', '/total_users?days=7', '/total_users?days=30'];
const WARM_UP_SECONDS = 1;
/** Requests on one connection per endpoint: the latency of a read when nothing queues before it. */
const UNLOADED_REQUESTS = 1000;
const QUERY_CALLS = 20_000;
const DAY_MS = 86_400_000;

interface Endpoint {
  path: string;
  loaded: LoadResult;
  unloaded: LoadResult;
}

interface AtSize {
  known: number;
  endpoints: Endpoint[];
  serverRssBytes: number;
  /** Microseconds per call, by query name. */
  queryMicros: Record<string, number>;
}

/**
 * Mean microseconds per call of `query`, after as many calls to warm it up (the first size measured would pay for the
 * JIT otherwise).
 */
async function perCallMicros(query: () => Promise<number>): Promise<number> {
  for (let i = 0; i < QUERY_CALLS; i++) await query();
  const startedMs = performance.now();
  for (let i = 0; i < QUERY_CALLS; i++) await query();
  return ((performance.now() - startedMs) * 1000) / QUERY_CALLS;
}

async function queryCosts(dataDir: string): Promise<Record<string, number>> {
  const store = SqliteStore.open(join(dataDir, DATABASE_FILE), storeOptions(defaultConfig()), Date.now());
  try {
    const nowMs = Date.now();
    return {
      'countOnline(now)': await perCallMicros(() => store.countOnline(nowMs)),
      'countActive(now - 7 d, now)': await perCallMicros(() => store.countActive(nowMs - 7 * DAY_MS, nowMs)),
      'countActive(now - 30 d, now)': await perCallMicros(() => store.countActive(nowMs - 30 * DAY_MS, nowMs)),
    };
  } finally {
    await store.close();
  }
}

async function atSize(ctx: BenchContext, known: number): Promise<AtSize> {
  const dataDir = await ctx.seeds.get(known, Math.floor(known / 10));
  const service = await startService([
    '--data-dir',
    dataDir,
    '--read-rate-limit',
    'off',
    '--rate-limit',
    'off',
    '--address-rate-limit',
    'off',
  ]);
  const endpoints: Endpoint[] = [];
  let serverRssBytes: number;
  try {
    let next = 0;
    await load({
      url: service.url,
      connections: ctx.connections,
      seconds: WARM_UP_SECONDS,
      method: 'GET',
      path: PATHS[0] as string,
      vary: () => ({ path: PATHS[next++ % PATHS.length] as string }),
    });
    for (const path of PATHS) {
      ctx.log(`case 2: ${count(known)} known: GET ${path}`);
      const loaded = await load({
        url: service.url,
        connections: ctx.connections,
        seconds: ctx.durationSeconds / 2,
        method: 'GET',
        path,
      });
      const unloaded = await load({ url: service.url, connections: 1, amount: UNLOADED_REQUESTS, method: 'GET', path });
      endpoints.push({ path, loaded, unloaded });
    }
    serverRssBytes = rssBytes(service.process.pid);
  } finally {
    await stop(service.process);
  }
  ctx.log(`case 2: ${count(known)} known: in-process queries`);
  return { known, endpoints, serverRssBytes, queryMicros: await queryCosts(dataDir) };
}

const label = (known: number) => (known >= 1_000_000 ? `${known / 1_000_000}M` : `${known / 1000}k`);

export async function readsCase(ctx: BenchContext): Promise<CaseReport> {
  const sizes = [...new Set(SIZES.map((size) => Math.min(size, ctx.known)))];
  const results: AtSize[] = [];
  for (const known of sizes) results.push(await atSize(ctx, known));

  const rows: Row[] = [];
  for (const result of results) {
    const name = `2 reads, ${label(result.known)} known`;
    for (const { path, loaded, unloaded } of result.endpoints) {
      const failures = loaded.non2xx + loaded.errors + unloaded.non2xx + unloaded.errors;
      rows.push({
        case: name,
        measure: `GET ${path}, saturated (${ctx.connections} connections)`,
        value: `${count(loaded.requestsPerSecond)} req/s, p50 ${ms(loaded.p50Ms)}, p99 ${ms(loaded.p99Ms)}`,
        target: 'p99 <= 2 ms',
        verdict: against(loaded.p99Ms, { max: 2 }),
      });
      rows.push({
        case: name,
        measure: `GET ${path}, one request at a time`,
        value: `p50 ${ms(unloaded.p50Ms)}, p99 ${ms(unloaded.p99Ms)}; non-2xx + errors (both runs) ${count(failures)}`,
        target: 'p99 <= 2 ms, no failures',
        verdict: failures > 0 ? 'FAIL' : against(unloaded.p99Ms, { max: 2 }),
      });
    }
    rows.push({
      case: name,
      measure: 'server VmRSS after the reads',
      value: bytes(result.serverRssBytes),
      target: '',
      verdict: 'info',
    });
  }
  const first = results[0] as AtSize;
  const last = results[results.length - 1] as AtSize;
  for (const query of Object.keys(first.queryMicros)) {
    const growth = (last.queryMicros[query] as number) / (first.queryMicros[query] as number);
    rows.push({
      case: '2 reads, in process',
      measure: `${query}, µs per call`,
      value: `${results.map((result) => `${(result.queryMicros[query] as number).toFixed(2)} (${label(result.known)})`).join(', ')}; ${label(last.known)} / ${label(first.known)} = ${ratio(growth)}`,
      target: `${label(last.known)} <= 3 × ${label(first.known)}`,
      verdict: against(growth, { max: 3 }),
    });
  }
  return {
    title: 'Case 2: reads at scale',
    rows,
    notes: [
      `Each data dir holds N known identities, N/10 of them online; the service runs with --read-rate-limit off --rate-limit off --address-rate-limit off. ` +
        `Saturated: ${ctx.connections} connections as fast as answers come, ${ctx.durationSeconds / 2} s per endpoint after a ${WARM_UP_SECONDS} s warm-up; ` +
        `one at a time: ${UNLOADED_REQUESTS} requests one after another on 1 connection.`,
      'Latencies are percentiles of every 2xx response time (autocannon hrtime, not its whole-millisecond histogram). ' +
        `With ${ctx.connections} connections in flight the p99 includes queueing: by Little's law the mean latency is ${ctx.connections} / (requests per second).`,
      `In process: SqliteStore opened on the same directory (service stopped), ${count(QUERY_CALLS)} awaited calls each after as many warm-up calls.`,
    ],
  };
}
