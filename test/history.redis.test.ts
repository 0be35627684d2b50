// Concurrency history on three real instances sharing one Redis: the same exact figures on every instance, timeouts
// counted, and the lease taken over without a dip or a lost record when the settling instance is killed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startInstance, type Instance } from './support/instances.js';
import { until } from './support/poll.js';
import { startRedis, type RedisServer } from './support/redis-server.js';

const SECRET = 'history-redis-secret-0123456789abcdef0123';

interface Peak {
  online: number;
  at: string | null;
}
interface Peaks {
  online: number;
  today: Peak;
  last_24h: Peak;
  all_time: Peak;
}
interface Point {
  start: string;
  max: number;
  min: number;
  mean: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function read<T>(instance: Instance, path: string): Promise<T> {
  const response = await fetch(`${instance.url}${path}`);
  assert.equal(response.status, 200, path);
  return (await response.json()) as T;
}

const peaks = (instance: Instance, channel?: string) =>
  read<Peaks>(instance, `/analytics/peaks${channel === undefined ? '' : `?channel=${channel}`}`);
const minutes = async (instance: Instance, fromMs: number) =>
  (await read<{ points: Point[] }>(instance, `/analytics/concurrency?from=${new Date(fromMs).toISOString()}`)).points;

/** Heartbeats from `count` clients (ids from `first`), spread round-robin over `instances`, all acknowledged. */
async function beats(instances: readonly Instance[], first: number, count: number, channel?: string): Promise<void> {
  const statuses = await Promise.all(
    Array.from({ length: count }, async (_, n) => {
      const target = instances[n % instances.length] as Instance;
      const response = await fetch(`${target.url}/heartbeat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(
          channel === undefined ? { client_id: `c${first + n}` } : { client_id: `c${first + n}`, channel },
        ),
      });
      return response.status;
    }),
  );
  assert.deepEqual(new Set(statuses), new Set([200]));
}

async function leads(instance: Instance): Promise<boolean> {
  const text = await (await fetch(`${instance.url}/metrics`)).text();
  return /^online_stats_leader 1$/m.test(text);
}

function threeInstances(extra: readonly string[]) {
  const state = { redis: null as RedisServer | null, instances: [] as Instance[] };
  before(async () => {
    state.redis = await startRedis();
    const args = [
      '--store',
      'redis',
      '--redis-url',
      state.redis.url,
      '--identity-secret',
      SECRET,
      '--read-rate-limit',
      'off',
      '--address-rate-limit',
      'off',
      ...extra,
    ];
    state.instances = await Promise.all([0, 1, 2].map(() => startInstance(args)));
  });
  after(async () => {
    for (const instance of state.instances) await instance.kill();
    await state.redis?.stop();
  });
  return state;
}

describe('concurrency history on three instances sharing one Redis', () => {
  const state = threeInstances(['--heartbeat-timeout', '2s']);

  it('every instance answers the same exact peaks and minutes, and timeouts lower the count with no heartbeat', async () => {
    const { instances } = state;
    const startedMs = Date.now();
    await beats(instances, 0, 18);
    await beats(instances, 100, 12, 'lobby');
    const first = instances[0] as Instance;
    const record = await until(
      () => peaks(first),
      (answer) => answer.all_time.online === 30,
      5000,
      'the record of 30 on instance 0',
    );
    assert.ok(record.all_time.at !== null && Date.parse(record.all_time.at) >= startedMs - 1000);
    assert.deepEqual(record.today, record.all_time);
    const lobby = await peaks(first, 'lobby');
    assert.equal(lobby.all_time.online, 12);
    assert.equal(lobby.online, 12);
    // Exactly one instance settles the history; the others read what it saved.
    const leaders = await Promise.all(instances.map(leads));
    assert.equal(leaders.filter(Boolean).length, 1, `leaders: ${leaders.join(', ')}`);
    for (const instance of instances) {
      assert.deepEqual((await peaks(instance)).all_time, record.all_time, instance.url);
      assert.deepEqual((await peaks(instance, 'lobby')).all_time, lobby.all_time, instance.url);
    }

    // Nobody beats again: 2 s later everyone has timed out, and the series says so at once.
    await until(
      () => peaks(first),
      (answer) => answer.online === 0,
      5000,
      'everyone timed out',
    );
    await sleep(1500); // a settle round after the expiries
    // Read again if a minute began between the reads: the later ones would have one more point.
    let series = await Promise.all(instances.map((instance) => minutes(instance, startedMs)));
    for (let retry = 0; retry < 3 && new Set(series.map((points) => points.length)).size > 1; retry++) {
      await sleep(1000);
      series = await Promise.all(instances.map((instance) => minutes(instance, startedMs)));
    }
    const [reference] = series as [Point[]];
    // The running minute's mean grows with the time it covers, which differs by a few ms between the reads.
    const settled = (points: Point[]) => points.map((p, i) => (i === points.length - 1 ? { ...p, mean: 0 } : p));
    for (const other of series.slice(1))
      assert.deepEqual(settled(other), settled(reference), 'every instance answers the same minutes');
    assert.equal(Math.max(...reference.map((p) => p.max)), 30);
    const last = reference[reference.length - 1] as Point;
    assert.equal(last.min, 0, 'the timeouts lowered the running minute to 0');
    // The record stays after the count fell.
    assert.deepEqual((await peaks(first)).all_time, record.all_time);
  });
});

describe('the settling instance killed', () => {
  const state = threeInstances([]);

  it('another takes the lease over: no dip in the series, the record kept, new records counted', async () => {
    const { instances } = state;
    const startedMs = Date.now();
    await beats(instances, 0, 40);
    const first = instances[0] as Instance;
    const record = await until(
      () => peaks(first),
      (answer) => answer.all_time.online === 40,
      5000,
      'the record of 40',
    );
    const leader = await until(
      async () => {
        const flags = await Promise.all(instances.map(leads));
        return flags.indexOf(true);
      },
      (index) => index >= 0,
      5000,
      'an instance holds the lease',
    );
    const killedAtMs = Date.now();
    await (instances[leader] as Instance).kill();
    const survivors = instances.filter((_, n) => n !== leader);
    // The lease lasts 5 s unrenewed; then a survivor settles again.
    await until(
      async () => (await Promise.all(survivors.map(leads))).filter(Boolean).length,
      (count) => count === 1,
      15_000,
      'a survivor took the lease over',
    );
    await beats(survivors, 1000, 5);
    const after = await until(
      () => peaks(survivors[0] as Instance),
      (answer) => answer.all_time.online === 45,
      5000,
      'the new record of 45',
    );
    assert.ok(Date.parse(after.all_time.at as string) >= killedAtMs, 'the new record is from after the kill');
    assert.deepEqual(await peaks(survivors[1] as Instance), after);
    assert.equal(after.online, 45);
    // Every minute since the 40 came online has them all: the takeover made no dip.
    const points = (await minutes(survivors[0] as Instance, startedMs)).filter(
      (p) => Date.parse(p.start) + 60_000 > Date.parse(record.all_time.at as string) + 1,
    );
    assert.ok(points.length >= 1);
    const [firstPoint, ...later] = points as [Point, ...Point[]];
    assert.equal(firstPoint.max >= 40, true);
    for (const point of later) assert.ok(point.min >= 40, `no dip at ${point.start}: min ${point.min}`);
    assert.equal(Math.max(...points.map((p) => p.max)), 45);
  });
});
