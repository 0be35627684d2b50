// Case 1: heartbeat throughput of the service (SQLite with production defaults, and --store redis) next to a bare
// Fastify route and two naive peers, at two loads; and no acknowledged heartbeat lost to SIGKILL.
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Pseudonymizer, identityOf } from '../../src/identity.js';
import { defaultConfig } from '../../src/config.js';
import { storeOptions } from '../../src/open-store.js';
import { DATABASE_FILE, SqliteStore } from '../../src/store/sqlite.js';
import { startRedis, type RedisServer } from '../../test/support/redis-server.js';
import type { BenchContext } from '../context.js';
import { load, meanOf, simulatedAddress, simulatedHeartbeats, type LoadResult } from '../load.js';
import { against, count, ms, ratio, type CaseReport, type Row, type Verdict } from '../report.js';
import {
  SECRET,
  cpuSeconds,
  redisCpuSeconds,
  scratchDir,
  startBaseline,
  startPeer,
  startService,
  stop,
  type Listening,
} from '../support.js';
import { findWrk, wrkHeartbeats } from '../wrk.js';

const WARM_UP_SECONDS = 2;
const ROUNDS = 2;
/** The second load: many connections to few cores, where a write path that batches commits should pull ahead. */
const HEAVY_CONNECTIONS = 256;
/** The targets of the performance issue: the service's throughput against the bare route, at each load. */
const SERVICE_RATIO_LIGHT = 0.55;
const SERVICE_RATIO_HEAVY = 0.8;
const REDIS_STORE_RATIO_HEAVY = 0.6;
const SERVICE_P99_MS = 10;
const REDIS_CPU_PER_HEARTBEAT_MICROS = 10;

type ServerKey = 'bare' | 'naiveSqlite' | 'naiveRedis' | 'service' | 'serviceRedis';

interface Server {
  key: ServerKey;
  label: string;
  listening: Listening;
  /** Its own redis-server, when it keeps its data in Redis: its CPU is part of the heartbeat's cost. */
  redis: RedisServer | null;
}

interface Run extends LoadResult {
  /** CPU the server process used during the run. */
  serverCpuSeconds: number;
  /** CPU its redis-server used during the run (0 without one). */
  redisCpuSeconds: number;
}

/**
 * Acknowledged addresses whose pseudonym is not a row of the database after the kill: the store is opened and closed
 * first, as the next start would (its journal replayed and folded), then the database is read.
 */
async function missingFromDatabase(dataDir: string, addresses: ReadonlySet<string>): Promise<number> {
  const path = join(dataDir, DATABASE_FILE);
  await SqliteStore.open(path, storeOptions(defaultConfig({ dataDir })), Date.now()).close();
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare<[Buffer], number>('SELECT 1 FROM identities WHERE id = ?').pluck();
    const pseudonyms = new Pseudonymizer(SECRET);
    let missing = 0;
    for (const address of addresses) {
      if (row.get(Buffer.from(pseudonyms.pseudonym(identityOf(undefined, address)), 'latin1')) === undefined) missing++;
    }
    return missing;
  } finally {
    db.close();
  }
}

const row = (measure: string, value: string, target = '', verdict: Verdict = 'info'): Row => ({
  case: '1 heartbeat',
  measure,
  value,
  target,
  verdict,
});

const sum = (runs: readonly Run[], figure: (run: Run) => number) => runs.reduce((total, run) => total + figure(run), 0);
/** Heartbeats answered 2xx per second, the mean of the runs. */
const rate = (runs: readonly Run[]) => meanOf(runs, (run) => run.okPerSecond);
/** CPU over all runs divided by all their responses: a long run weighs more than a short one. */
const microsPerRequest = (runs: readonly Run[], cpu: (run: Run) => number) =>
  (sum(runs, cpu) * 1e6) /
  Math.max(
    1,
    sum(runs, (run) => run.responses),
  );
const micros = (value: number) => `${value.toFixed(1)} µs`;
/** Ahead means strictly faster, for every peer compared. */
const ahead = (...ratios: number[]): Verdict => (ratios.every((value) => value > 1) ? 'pass' : 'FAIL');

export async function heartbeatCase(ctx: BenchContext): Promise<CaseReport> {
  const dataDir = scratchDir('heartbeat');
  const wrk = findWrk();
  const generator = wrk === null ? 'autocannon' : 'wrk';
  const loads = ctx.connections === HEAVY_CONNECTIONS ? [HEAVY_CONNECTIONS] : [ctx.connections, HEAVY_CONNECTIONS];
  const servers: Server[] = [];
  const redisServers: RedisServer[] = [];
  const privateRedis = async () => {
    const redis = await startRedis();
    redisServers.push(redis);
    return redis;
  };
  let service: Listening | null = null;
  try {
    ctx.log('case 1: starting the five servers');
    servers.push({ key: 'bare', label: 'bare Fastify', listening: await startBaseline(), redis: null });
    const naiveSqliteFile = join(scratchDir('naive-sqlite'), 'heartbeats.db');
    servers.push({
      key: 'naiveSqlite',
      label: 'naive SQLite',
      listening: await startPeer('naive-sqlite', join('peers', 'naive-sqlite.ts'), ['--database', naiveSqliteFile]),
      redis: null,
    });
    const naiveRedis = await privateRedis();
    servers.push({
      key: 'naiveRedis',
      label: 'naive Redis',
      listening: await startPeer('naive-redis', join('peers', 'naive-redis.ts'), ['--redis-url', naiveRedis.url]),
      redis: naiveRedis,
    });
    service = await startService(
      ['--data-dir', dataDir, '--trust-proxy', '127.0.0.1'],
      ctx.profileDir === null ? {} : { nodeFlags: ['--cpu-prof', '--cpu-prof-dir', ctx.profileDir] },
    );
    servers.push({ key: 'service', label: 'service', listening: service, redis: null });
    const storeRedis = await privateRedis();
    servers.push({
      key: 'serviceRedis',
      label: 'service --store redis',
      listening: await startService([
        '--data-dir',
        scratchDir('heartbeat-redis'),
        '--trust-proxy',
        '127.0.0.1',
        '--store',
        'redis',
        '--redis-url',
        storeRedis.url,
      ]),
      redis: storeRedis,
    });

    // One sequence over all 131,072 addresses shared by every run, wrk's and autocannon's: an address comes back
    // only after that many requests, far apart enough for the 1/s per-client limit.
    const sequence = { next: 0 };
    const acknowledged = new Set<string>();
    let okTotal = 0;
    // autocannon, answer by answer: the addresses the service acknowledged, for the durability check.
    const acknowledgedHeartbeats = (target: Listening, connections: number, seconds: number) =>
      load({
        url: target.url,
        connections,
        seconds,
        method: 'POST',
        path: '/heartbeat',
        vary: () => {
          const address = simulatedAddress(sequence.next++);
          return { headers: { 'x-forwarded-for': address }, tag: address };
        },
        onOk: (address: string) => {
          acknowledged.add(address);
          okTotal++;
        },
      });
    const heartbeats = (server: Server, connections: number, seconds: number): Promise<LoadResult> => {
      if (wrk !== null) return wrkHeartbeats(wrk, server.listening.url, connections, seconds, sequence);
      // Without wrk every run of the service also feeds the durability check, as autocannon reports each answer.
      return server.key === 'service'
        ? acknowledgedHeartbeats(server.listening, connections, seconds)
        : simulatedHeartbeats(server.listening.url, connections, seconds, sequence);
    };
    const measured = async (server: Server, connections: number): Promise<Run> => {
      const pid = server.listening.process.pid;
      const cpuBefore = cpuSeconds(pid);
      const redisBefore = server.redis === null ? 0 : await redisCpuSeconds(server.redis);
      const result = await heartbeats(server, connections, ctx.durationSeconds);
      const serverCpuSeconds = cpuSeconds(pid) - cpuBefore;
      const redisCpu = server.redis === null ? 0 : (await redisCpuSeconds(server.redis)) - redisBefore;
      return { ...result, serverCpuSeconds, redisCpuSeconds: redisCpu };
    };

    ctx.log(`case 1: warm-up with ${generator}, ${WARM_UP_SECONDS} s each`);
    for (const server of servers) {
      // The service's warm-up always goes through autocannon: its acknowledgements count for the durability check.
      if (server.key === 'service') await acknowledgedHeartbeats(server.listening, ctx.connections, WARM_UP_SECONDS);
      else await heartbeats(server, ctx.connections, WARM_UP_SECONDS);
    }
    const runs = new Map<string, Run[]>();
    const runsOf = (key: ServerKey, connections: number): Run[] => {
      const name = `${key}@${connections}`;
      const found = runs.get(name) ?? [];
      runs.set(name, found);
      return found;
    };
    for (let round = 1; round <= ROUNDS; round++) {
      // Every other round in the opposite order, so no server always follows the same one.
      const order = round % 2 === 1 ? servers : [...servers].reverse();
      for (const connections of loads) {
        ctx.log(
          `case 1: round ${round} of ${ROUNDS}, ${connections} connections: ` +
            `${order.map((server) => server.label).join(', ')}, ${ctx.durationSeconds} s each`,
        );
        for (const server of order) runsOf(server.key, connections).push(await measured(server, connections));
      }
    }
    // Last, answer by answer and killed the moment it stops: whatever the service acknowledged must already be on disk.
    ctx.log(`case 1: durability run on the service with autocannon, ${WARM_UP_SECONDS} s, then the kill`);
    await acknowledgedHeartbeats(service, ctx.connections, WARM_UP_SECONDS);
    const killSignal = ctx.profileDir === null ? 'SIGKILL' : 'SIGTERM';
    await stop(service.process, killSignal);
    const missing = await missingFromDatabase(dataDir, acknowledged);

    const rows: Row[] = [];
    for (const connections of loads) {
      const bareRate = rate(runsOf('bare', connections));
      for (const server of servers) {
        const these = runsOf(server.key, connections);
        const cpu =
          `CPU ${micros(microsPerRequest(these, (run) => run.serverCpuSeconds))}` +
          (server.redis === null ? '' : ` + Redis ${micros(microsPerRequest(these, (run) => run.redisCpuSeconds))}`);
        rows.push(
          row(
            `${server.label}, ${connections} connections: heartbeats/s (runs) · × bare · per request · p99`,
            `${count(rate(these))}/s (${these.map((run) => count(run.okPerSecond)).join(', ')}) · ` +
              `${ratio(rate(these) / bareRate)} · ${cpu} · ${ms(meanOf(these, (run) => run.p99Ms))}`,
          ),
        );
      }
    }

    const light = ctx.connections;
    const versus = (key: ServerKey, peer: ServerKey, connections: number) =>
      rate(runsOf(key, connections)) / rate(runsOf(peer, connections));
    const lightRatio = versus('service', 'bare', light);
    const heavyRatio = versus('service', 'bare', HEAVY_CONNECTIONS);
    const lightP99 = meanOf(runsOf('service', light), (run) => run.p99Ms);
    rows.push(
      row(
        `service / bare Fastify, ${light} connections`,
        ratio(lightRatio),
        `>= ${SERVICE_RATIO_LIGHT}`,
        against(lightRatio, { min: SERVICE_RATIO_LIGHT }),
      ),
      row(
        `service / bare Fastify, ${HEAVY_CONNECTIONS} connections`,
        ratio(heavyRatio),
        `>= ${SERVICE_RATIO_HEAVY}`,
        against(heavyRatio, { min: SERVICE_RATIO_HEAVY }),
      ),
      row(
        `p99, service, ${light} connections`,
        ms(lightP99),
        `<= ${SERVICE_P99_MS} ms`,
        against(lightP99, { max: SERVICE_P99_MS }),
      ),
    );
    for (const connections of loads) {
      const overSqlite = versus('service', 'naiveSqlite', connections);
      const overRedis = versus('service', 'naiveRedis', connections);
      rows.push(
        row(
          `service / naive SQLite, service / naive Redis, ${connections} connections`,
          `${ratio(overSqlite)} / ${ratio(overRedis)}`,
          '> 1 both',
          ahead(overSqlite, overRedis),
        ),
      );
    }
    for (const connections of loads) {
      const overRedis = versus('serviceRedis', 'naiveRedis', connections);
      rows.push(
        row(
          `service --store redis / naive Redis, ${connections} connections`,
          ratio(overRedis),
          '> 1',
          ahead(overRedis),
        ),
      );
    }
    const redisStoreHeavy = versus('serviceRedis', 'bare', HEAVY_CONNECTIONS);
    rows.push(
      row(
        `service --store redis / bare Fastify, ${HEAVY_CONNECTIONS} connections`,
        ratio(redisStoreHeavy),
        `>= ${REDIS_STORE_RATIO_HEAVY}`,
        against(redisStoreHeavy, { min: REDIS_STORE_RATIO_HEAVY }),
      ),
    );
    const redisCpu = loads.map((connections) =>
      microsPerRequest(runsOf('serviceRedis', connections), (run) => run.redisCpuSeconds),
    );
    rows.push(
      row(
        `Redis CPU per heartbeat, service --store redis, ${loads.join(' / ')} connections`,
        redisCpu.map(micros).join(' / '),
        `<= ${REDIS_CPU_PER_HEARTBEAT_MICROS} µs`,
        against(Math.max(...redisCpu), { max: REDIS_CPU_PER_HEARTBEAT_MICROS }),
      ),
    );
    for (const key of ['service', 'serviceRedis'] as const) {
      const all = loads.flatMap((connections) => runsOf(key, connections));
      const label = servers.find((server) => server.key === key)?.label ?? key;
      const non2xx = sum(all, (run) => run.non2xx);
      const errors = sum(all, (run) => run.errors);
      rows.push(
        row(`non-2xx, ${label} (all runs)`, count(non2xx), '0', against(non2xx, { max: 0 })),
        row(
          `errors / timeouts, ${label} (all runs)`,
          `${count(errors)} / ${count(sum(all, (run) => run.timeouts))}`,
          '0',
          against(errors, { max: 0 }),
        ),
      );
    }
    const peers = servers.filter((server) => server.key !== 'service' && server.key !== 'serviceRedis');
    rows.push(
      row(
        `non-2xx / errors, ${peers.map((server) => server.label).join(' / ')} (all runs)`,
        peers
          .map((server) => {
            const all = loads.flatMap((connections) => runsOf(server.key, connections));
            return `${count(sum(all, (run) => run.non2xx))} / ${count(sum(all, (run) => run.errors))}`;
          })
          .join(', '),
      ),
      row(
        `load generator (${generator}) CPU in cores, mean over the runs, ${loads.join(' / ')} connections`,
        loads
          .map((connections) =>
            ratio(
              meanOf(
                servers.flatMap((server) => runsOf(server.key, connections)),
                (run) => run.generatorCores,
              ),
            ),
          )
          .join(' / '),
      ),
      row(
        'heartbeats acknowledged to autocannon (distinct addresses)',
        `${count(okTotal)} (${count(acknowledged.size)})`,
      ),
      row(`acknowledged heartbeats missing after ${killSignal}`, count(missing), '0', against(missing, { max: 0 })),
    );

    return {
      title: 'Case 1: heartbeat throughput vs a bare Fastify route and naive peers',
      rows,
      notes: [
        `POST /heartbeat without a body, X-Forwarded-For cycling over 131,072 addresses of 198.18.0.0/15, at ` +
          `${loads.join(' and ')} connections; every server is its own process on 127.0.0.1 and takes the client ` +
          'address from X-Forwarded-For (trusting 127.0.0.1).',
        'Servers: bare Fastify (bench/baseline.ts, no storage); naive SQLite (bench/peers/naive-sqlite.ts: one upsert ' +
          'of address and last_seen_ms per request, WAL, synchronous = FULL); naive Redis (bench/peers/naive-redis.ts: ' +
          'ZADD online and PFADD day:<date> in one pipeline per request, no limits); the service with production ' +
          'defaults (rate limits on, SQLite with synchronous = FULL) plus --trust-proxy 127.0.0.1; the same with ' +
          '--store redis. Each Redis-backed server has its own redis-server without persistence (no RDB, no AOF).',
        `Warm-up ${WARM_UP_SECONDS} s each at ${ctx.connections} connections, then ${ROUNDS} rounds, each running ` +
          `every server at each load for ${ctx.durationSeconds} s, the order of the servers reversed every other ` +
          'round. Heartbeats/s and p99 are the means of the rounds; "× bare" is against the bare route at the same ' +
          "load; CPU per request is the server process's CPU (/proc) over all its runs at that load divided by its " +
          "responses, and Redis's the same from INFO cpu (used_cpu_user + used_cpu_sys) of its own redis-server.",
        wrk === null
          ? 'Load generator: autocannon, in the bench process on the same machine, so it takes CPU the servers could ' +
            'otherwise use (wrk is used instead when installed: apt-get install wrk). Latencies are percentiles of ' +
            'every 2xx response time (autocannon hrtime).'
          : `Load generator: wrk (${wrk}), one thread in its own process, a Lua script giving each request the next ` +
            "address; latencies are wrk's percentiles of every response (microsecond histogram), its CPU read from " +
            '/proc by the script.',
        `Durability: the service is killed (${killSignal}) the moment a last ${WARM_UP_SECONDS} s autocannon run at ` +
          `${ctx.connections} connections stops, then its database is opened read-only and the pseudonym of every ` +
          'address answered 2xx is looked up. ' +
          (wrk === null
            ? 'Every autocannon run of the service counts: its warm-up, its measured runs and that last run.'
            : "wrk reports no answer per request, so the acknowledgements come from the service's autocannon " +
              'warm-up and that last run, not from the measured wrk runs.') +
          (ctx.profileDir === null
            ? ''
            : ` With --profile the service is stopped by SIGTERM so it can write its CPU profile to ${ctx.profileDir}.`),
      ],
    };
  } finally {
    for (const server of servers) await stop(server.listening.process, 'SIGKILL');
    // The service may have failed after it started and before it joined `servers`.
    if (service !== null) await stop(service.process, 'SIGKILL');
    for (const redis of redisServers) await redis.stop();
  }
}
