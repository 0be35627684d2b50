// The shared rate limiter on a real redis-server: the same decisions as the in-process limiter, one limit across
// instances.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Rate } from '../src/config.js';
import { StoreUnavailableError } from '../src/errors.js';
import { MemoryRateLimiterStore } from '../src/ratelimit/memory.js';
import { RedisRateLimiterStore } from '../src/ratelimit/redis.js';
import { RedisKeys } from '../src/redis/keys.js';
import { connectRedis, type RedisConnection } from '../src/redis/connection.js';
import { startRedis, type RedisServer } from './support/redis-server.js';

const T0 = Date.UTC(2026, 2, 10, 12);
let server: RedisServer;
const clients: RedisConnection[] = [];

/** One limiter per simulated instance, each on its own connection, all on one Redis. */
async function instances(count: number, prefix: string): Promise<RedisRateLimiterStore[]> {
  const keys = new RedisKeys(prefix, 4);
  const made: RedisRateLimiterStore[] = [];
  for (let i = 0; i < count; i++) {
    const client = await connectRedis(server.url);
    clients.push(client);
    made.push(new RedisRateLimiterStore(client, keys));
  }
  return made;
}

before(async () => {
  server = await startRedis();
});
after(async () => {
  for (const client of clients) client.client.disconnect();
  await server?.stop();
});

describe('Redis rate limiter', () => {
  it('decides exactly as the in-process limiter, whichever instance a request reaches', async () => {
    const shared = await instances(3, 'same:');
    const memory = new MemoryRateLimiterStore(1000);
    const rates: Rate[] = [
      { count: 1, periodMs: 1000, burst: 1 },
      { count: 3, periodMs: 1000, burst: 5 },
      { count: 50, periodMs: 1000, burst: 100 },
      { count: 7, periodMs: 60_000, burst: 7 },
    ];
    let state = 11;
    const random = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    let nowMs = T0;
    let denied = 0;
    for (let step = 0; step < 600; step++) {
      nowMs += Math.floor(random() * 400);
      const rate = rates[step % rates.length] as Rate;
      const key = `ingest:caller-${Math.floor(random() * 3)}-${step % rates.length}`;
      const instance = shared[Math.floor(random() * shared.length)] as RedisRateLimiterStore;
      // Every fifth request spends several units (a batch of ids), some more than the whole burst.
      const cost = step % 5 === 0 ? 1 + Math.floor(random() * 8) : 1;
      const expected = memory.take(key, rate, nowMs, cost);
      assert.deepEqual(await instance.take(key, rate, nowMs, cost), expected, `step ${step}`);
      if (!expected.allowed) denied++;
    }
    assert.ok(denied > 50, `the sequence exercises denials too (${denied})`);
  });

  it('concurrent requests on several instances never spend more than the burst', async () => {
    const shared = await instances(3, 'race:');
    const rate: Rate = { count: 10, periodMs: 1000, burst: 10 };
    const decisions = await Promise.all(
      Array.from({ length: 60 }, (_, n) =>
        (shared[n % 3] as RedisRateLimiterStore).take('ingest:one-caller', rate, T0),
      ),
    );
    assert.equal(decisions.filter((d) => d.allowed).length, 10);
    const later = await (shared[1] as RedisRateLimiterStore).take('ingest:one-caller', rate, T0 + 100);
    assert.equal(later.allowed, true, 'one interval later, one more');
  });

  it('decisions made in the same turn share a call yet decide as if taken one by one', async () => {
    const [limiter] = await instances(1, 'batch:');
    const memory = new MemoryRateLimiterStore(1000);
    const rate: Rate = { count: 2, periodMs: 1000, burst: 3 };
    const requests = Array.from({ length: 200 }, (_, n) => ({ key: `ingest:caller-${n % 37}`, nowMs: T0 + (n % 5) }));
    const decisions = await Promise.all(requests.map(({ key, nowMs }) => limiter!.take(key, rate, nowMs)));
    assert.deepEqual(
      decisions,
      requests.map(({ key, nowMs }) => memory.take(key, rate, nowMs)),
    );
  });

  it('keeps a key only until its budget is whole again', async () => {
    const [limiter] = await instances(1, 'ttl:');
    const keys = new RedisKeys('ttl:', 4);
    const rate: Rate = { count: 1, periodMs: 60_000, burst: 3 };
    const decision = await limiter!.take('read:somebody', rate, T0);
    const ttl = Number(
      await clients.at(-1)!.client.call('PTTL', [keys.rateLimit(keys.shardOf('read:somebody'), 'read:somebody')]),
    );
    assert.ok(ttl > 0 && ttl <= decision.resetMs, `expires in ${ttl} ms, budget whole in ${decision.resetMs} ms`);
  });

  it('fails with StoreUnavailableError (503) while Redis is down, and decides again once it is back', async () => {
    const own = await startRedis();
    try {
      const keys = new RedisKeys('down:', 4);
      const client = await connectRedis(own.url);
      clients.push(client);
      const limiter = new RedisRateLimiterStore(client, keys);
      const rate: Rate = { count: 1, periodMs: 1000, burst: 1 };
      assert.equal((await limiter.take('ingest:x', rate, T0)).allowed, true);
      await own.kill();
      await assert.rejects(limiter.take('ingest:x', rate, T0 + 5000), StoreUnavailableError);
      await own.restart();
      let decision = null;
      for (let attempt = 0; attempt < 100 && decision === null; attempt++) {
        decision = await limiter.take('ingest:x', rate, T0 + 5000).catch(() => null);
        if (decision === null) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal(decision?.allowed, true);
    } finally {
      await own.stop();
    }
  });
});
