// Measures the figures docs/scaling.md's cost model rests on: Redis memory per identity, round trips and CPU per
// heartbeat.
//
//   npm run build && node --import tsx bench/redis-capacity.ts [identities=1000000] [httpSeconds=10]
//
// Starts its own redis-server (nothing saved) and one `online-stats serve --store redis` process on
// loopback ports, and removes them after.
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createCalendar } from '../src/calendar.js';
import { Pseudonymizer } from '../src/identity.js';
import { RedisRateLimiterStore } from '../src/ratelimit/redis.js';
import { RedisStore } from '../src/store/redis.js';
import type { RedisConnection } from '../src/redis/connection.js';
import type { StoreOptions } from '../src/store/store.js';
import { startRedis, type RedisServer } from '../test/support/redis-server.js';
import { cpuSeconds } from './support.js';

const IDENTITIES = Number(process.argv[2] ?? 1_000_000);
const HTTP_SECONDS = Number(process.argv[3] ?? 10);
const SHARDS = 16;
const DAY_MS = 86_400_000;
const NOW_MS = Date.UTC(2026, 2, 31, 12);
const OPTIONS: StoreOptions = {
  heartbeatTimeoutMs: 600_000,
  maxDays: 400,
  maxChannels: 1000,
  calendar: createCalendar('UTC'),
  historyMinuteDays: 14,
};
const SECRET = 'capacity-benchmark-secret-0123456789abcdef';
const pseudonyms = new Pseudonymizer(SECRET);
const identity = (n: number) => pseudonyms.pseudonym(`id:client-${n}`);

async function info(redis: RedisConnection, section: string): Promise<Record<string, string>> {
  const text = String(await redis.client.call('INFO', [section]));
  return Object.fromEntries(
    text
      .split('\r\n')
      .filter((line) => line.includes(':'))
      .map((line) => line.split(':', 2) as [string, string]),
  );
}
const usedMemory = async (redis: RedisConnection) => Number((await info(redis, 'memory')).used_memory);
const redisCpuSeconds = async (redis: RedisConnection) => {
  const cpu = await info(redis, 'cpu');
  return Number(cpu.used_cpu_user) + Number(cpu.used_cpu_sys);
};
async function scriptCalls(redis: RedisConnection): Promise<number> {
  const stats = await info(redis, 'commandstats');
  const calls = (name: string) => Number(/calls=(\d+)/.exec(stats[`cmdstat_${name}`] ?? '')?.[1] ?? 0);
  return calls('evalsha') + calls('eval');
}

/** Sum of MEMORY USAGE over the keys matching `pattern` (exact: SAMPLES 0). */
async function memoryOf(redis: RedisConnection, pattern: string): Promise<{ keys: number; bytes: number }> {
  let cursor = '0';
  let keys = 0;
  let bytes = 0;
  do {
    const [next, batch] = (await redis.client.call('SCAN', [cursor, 'MATCH', pattern, 'COUNT', 1000])) as [
      string,
      string[],
    ];
    cursor = next;
    for (const key of batch) {
      keys++;
      bytes += Number(await redis.client.call('MEMORY', ['USAGE', key, 'SAMPLES', 0]));
    }
  } while (cursor !== '0');
  return { keys, bytes };
}

async function median(times: number, fn: () => Promise<unknown>): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < times; i++) {
    const startedMs = performance.now();
    await fn();
    samples.push(performance.now() - startedMs);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] as number;
}

const shiftDay = (day: string, by: number) =>
  new Date(Date.parse(`${day}T00:00:00Z`) + by * DAY_MS).toISOString().slice(0, 10);
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

async function memory(server: RedisServer) {
  const store = await RedisStore.open({ url: server.url, prefix: 'mem:', shards: SHARDS }, OPTIONS);
  const redis = store.redis;
  const before = await usedMemory(redis);
  // Each identity beats once, on one of the last 30 days: 30 day sketches per shard, all dense.
  const BATCH = 2000;
  for (let start = 0; start < IDENTITIES; start += BATCH) {
    const day = Math.floor(start / BATCH) % 30;
    const beats = Array.from({ length: Math.min(BATCH, IDENTITIES - start) }, (_, i) => ({
      identity: identity(start + i),
      channel: null,
    }));
    await store.recordHeartbeats(beats, NOW_MS - (29 - day) * DAY_MS);
  }
  const afterIdentities = await usedMemory(redis);
  const seen = await memoryOf(redis, '{mem:*}:seen');
  const sketches = await memoryOf(redis, '{mem:*}:hll:*');
  const days = await memoryOf(redis, '{mem:*}:days');

  // The last day's identities beat again, now, on one of 100 channels: their channel presence.
  const ONLINE = Math.min(100_000, IDENTITIES);
  const beforeChannels = await usedMemory(redis);
  for (let start = 0; start < ONLINE; start += BATCH) {
    const beats = Array.from({ length: Math.min(BATCH, ONLINE - start) }, (_, i) => ({
      identity: identity(start + i),
      channel: `channel-${(start + i) % 100}`,
    }));
    await store.recordHeartbeats(beats, NOW_MS);
  }
  const channelPresence = (await usedMemory(redis)) - beforeChannels;
  const beforeLeaves = await usedMemory(redis);
  for (let start = 0; start < ONLINE; start += BATCH) {
    await store.recordLeaves(
      Array.from({ length: Math.min(BATCH, ONLINE - start) }, (_, i) => identity(start + i)),
      NOW_MS + 1,
    );
  }
  const leftEntries = (await usedMemory(redis)) - beforeLeaves;
  const last30 = Array.from({ length: 30 }, (_, i) => new Date(NOW_MS - (29 - i) * DAY_MS).toISOString().slice(0, 10));
  const [first, last] = [last30[0] as string, last30[29] as string];
  const reads = {
    countOnlineMs: round(await median(21, () => store.countOnline(NOW_MS + 2)), 2),
    countActive30dMs: round(await median(21, () => store.countActive(NOW_MS - 30 * DAY_MS, NOW_MS + 2)), 2),
    topChannelsMs: round(await median(21, () => store.topChannels(NOW_MS + 2, 10)), 2),
    dailyActivity30dMs: round(await median(21, () => store.dailyActivity(last30)), 2),
    distinctActive30dMs: round(await median(21, () => store.distinctActive(first, last)), 2),
    // The 30 days before today are over: counted once, then remembered by the instance.
    distinctActive30dPastFirstMs: round(
      await median(1, () => store.distinctActive(shiftDay(first, -1), shiftDay(last, -1))),
      2,
    ),
    distinctActive30dPastAgainMs: round(
      await median(21, () => store.distinctActive(shiftDay(first, -1), shiftDay(last, -1))),
      3,
    ),
  };
  const distinct = await store.distinctActive(first, last);
  // Rate-limit state: one key per caller and budget while its budget is not whole again.
  const limiter = new RedisRateLimiterStore(redis, store.keys);
  const CALLERS = Math.min(100_000, IDENTITIES);
  const beforeLimits = await usedMemory(redis);
  for (let start = 0; start < CALLERS; start += BATCH) {
    await Promise.all(
      Array.from({ length: Math.min(BATCH, CALLERS - start) }, (_, i) =>
        limiter.take(`ingest:${identity(start + i)}`, { count: 1, periodMs: 600_000, burst: 1 }, NOW_MS),
      ),
    );
  }
  const limiterKeys = (await usedMemory(redis)) - beforeLimits;
  await store.close();
  return {
    identities: IDENTITIES,
    usedMemoryPerIdentityBytes: round((afterIdentities - before) / IDENTITIES),
    seenZsetPerIdentityBytes: round(seen.bytes / IDENTITIES),
    daySketchBytes: round(sketches.bytes / sketches.keys, 0),
    daySketchKeys: sketches.keys,
    dayCountersBytes: days.bytes,
    channelPresencePerOnlineBytes: round(channelPresence / ONLINE),
    leftEntryPerLeaverBytes: round(leftEntries / ONLINE),
    rateLimitKeyPerCallerBytes: round(limiterKeys / CALLERS),
    distinct30dEstimate: distinct,
    distinct30dErrorPercent: round((100 * (distinct - IDENTITIES)) / IDENTITIES, 2),
    reads,
  };
}

/** Many single-heartbeat calls in flight at once, as HTTP requests make them: batching, round trips, Redis CPU. */
async function storeThroughput(server: RedisServer, withChannels: boolean) {
  const prefix = withChannels ? 'cpuch:' : 'cpu:';
  const store = await RedisStore.open({ url: server.url, prefix, shards: SHARDS }, OPTIONS);
  const KNOWN = 200_000;
  for (let start = 0; start < KNOWN; start += 2000) {
    await store.recordHeartbeats(
      Array.from({ length: 2000 }, (_, i) => ({ identity: identity(start + i), channel: null })),
      NOW_MS - 1000,
    );
  }
  let flushes = 0;
  store.onCommit = () => flushes++;
  const BEATS = 300_000;
  const IN_FLIGHT = 512;
  const cpuBefore = await redisCpuSeconds(store.redis);
  const callsBefore = await scriptCalls(store.redis);
  const startedMs = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < BEATS) {
        const n = next++;
        await store.recordHeartbeats(
          [{ identity: identity(n % KNOWN), channel: withChannels ? `channel-${n % 100}` : null }],
          NOW_MS + Math.floor(n / 100),
        );
      }
    }),
  );
  const seconds = (performance.now() - startedMs) / 1000;
  const redisCpu = (await redisCpuSeconds(store.redis)) - cpuBefore;
  const calls = (await scriptCalls(store.redis)) - callsBefore;
  await store.close();
  return {
    channels: withChannels,
    heartbeats: BEATS,
    heartbeatsPerSecond: Math.round(BEATS / seconds),
    roundTripsPerHeartbeat: round(flushes / BEATS, 4),
    scriptCallsPerHeartbeat: round(calls / BEATS, 3),
    redisCpuMicrosPerHeartbeat: round((redisCpu * 1e6) / BEATS, 2),
    heartbeatsPerRedisCoreSecond: Math.round(BEATS / redisCpu),
  };
}

/** One real instance under HTTP load: its CPU and Redis's per heartbeat, with the shared rate limiter on or off. */
async function http(server: RedisServer, limiter: boolean) {
  const cli = fileURLToPath(new URL('../dist/src/cli.js', import.meta.url));
  const prefix = limiter ? 'http:' : 'httpnl:';
  const args = [
    'serve',
    '--port',
    '0',
    '--host',
    '127.0.0.1',
    '--store',
    'redis',
    '--redis-url',
    server.url,
    '--redis-prefix',
    prefix,
  ];
  // With the limiter: both decisions a heartbeat with a client id takes (its own 1/s, and its address,
  // set high here because every request of this benchmark comes from 127.0.0.1).
  args.push('--identity-secret', SECRET, '--read-rate-limit', 'off', '--log-level', 'info');
  args.push(
    ...(limiter
      ? ['--rate-limit', '1/s', '--address-rate-limit', '1000000/s']
      : ['--rate-limit', 'off', '--address-rate-limit', 'off']),
  );
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const match = /Server listening at (http:\/\/[\d.:]+)/.exec(line);
        if (match) resolve(match[1] as string);
      });
      child.once('exit', (code) => reject(new Error(`instance exited ${code}`)));
    });
    const { hostname, port } = new URL(url);
    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    const post = (clientId: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          { agent, host: hostname, port, method: 'POST', path: '/heartbeat', headers: { 'x-client-id': clientId } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const store = await RedisStore.open({ url: server.url, prefix, shards: SHARDS }, OPTIONS);
    const redis = store.redis;
    // Warm-up, then the measured run; 200,000 clients in turn, each well under its 1/s.
    let n = 0;
    const run = async (seconds: number) => {
      const statuses = new Map<number, number>();
      const endMs = performance.now() + seconds * 1000;
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          while (performance.now() < endMs) {
            const status = await post(`client-${n++ % 200_000}`);
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
          }
        }),
      );
      return statuses;
    };
    await run(2);
    const cpuBefore = cpuSeconds(child.pid as number);
    const redisBefore = await redisCpuSeconds(redis);
    const callsBefore = await scriptCalls(redis);
    const startedMs = performance.now();
    const statuses = await run(HTTP_SECONDS);
    const calls = (await scriptCalls(redis)) - callsBefore;
    const seconds = (performance.now() - startedMs) / 1000;
    const instanceCpu = cpuSeconds(child.pid as number) - cpuBefore;
    const redisCpu = (await redisCpuSeconds(redis)) - redisBefore;
    const ok = statuses.get(200) ?? 0;
    agent.destroy();
    await store.close();
    return {
      rateLimiter: limiter,
      heartbeatsPerSecond: Math.round(ok / seconds),
      statuses: Object.fromEntries(statuses),
      instanceCpuMicrosPerHeartbeat: round((instanceCpu * 1e6) / ok, 0),
      heartbeatsPerInstanceCoreSecond: Math.round(ok / instanceCpu),
      scriptCallsPerHeartbeat: round(calls / ok, 2),
      redisCpuMicrosPerHeartbeat: round((redisCpu * 1e6) / ok, 2),
      heartbeatsPerRedisCoreSecond: Math.round(ok / redisCpu),
    };
  } finally {
    child.kill('SIGKILL');
  }
}

const server = await startRedis();
try {
  const version = String(
    await (async () => {
      const store = await RedisStore.open({ url: server.url, prefix: 'v:', shards: 1 }, OPTIONS);
      const text = (await info(store.redis, 'server')).redis_version;
      await store.close();
      return text;
    })(),
  );
  const results = {
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version, redis: version },
    memory: await memory(server),
    store: [await storeThroughput(server, false), await storeThroughput(server, true)],
    http: [await http(server, true), await http(server, false)],
  };
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
} finally {
  await server.stop();
}
