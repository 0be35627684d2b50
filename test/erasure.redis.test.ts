// Erasure on a real redis-server: no byte of an erased pseudonym is left in any key or value, and the history sees the
// erased identity go offline once, at the erasure, never back online at its timeout.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createCalendar } from '../src/calendar.js';
import type { Rate } from '../src/config.js';
import { RedisRateLimiterStore } from '../src/ratelimit/redis.js';
import { RedisStore } from '../src/store/redis.js';
import type { StoreOptions } from '../src/store/store.js';
import { startRedis, type RedisServer } from './support/redis-server.js';
import { id } from './store.suite.js';

const MINUTE = 60_000;
const T0 = Date.UTC(2026, 2, 10, 12);
const OPTIONS: StoreOptions = {
  heartbeatTimeoutMs: 10 * MINUTE,
  maxDays: 400,
  maxChannels: 5,
  calendar: createCalendar('UTC'),
  historyMinuteDays: 14,
};
const RATE: Rate = { count: 1, periodMs: 60_000, burst: 5 };
/** The limiter's budgets keyed by pseudonym (src/http/guards.ts), as an erasure forgets them. */
const BUDGETS = ['ingest', 'read', 'batch', 'presence'];

let server: RedisServer;
let raw: Redis;
before(async () => {
  server = await startRedis();
  raw = new Redis(server.url);
});
after(async () => {
  raw?.disconnect();
  await server?.stop();
});

/** Every key under the prefix (byte-exact names). */
async function keysOf(prefix: string): Promise<Buffer[]> {
  const found: Buffer[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await raw.scanBuffer(cursor, 'MATCH', `{${prefix}*`, 'COUNT', 1000);
    cursor = String(next);
    found.push(...batch);
  } while (cursor !== '0');
  return found;
}

/** A key's whole value as bytes: read by its type, and its DUMP as a catch-all (sketches, encodings). */
async function valueOf(key: Buffer): Promise<Buffer> {
  const type = await raw.type(key);
  const parts: Buffer[] = [];
  if (type === 'zset') parts.push(...(await raw.zrangeBuffer(key, 0, -1, 'WITHSCORES')));
  else if (type === 'hash')
    parts.push(
      ...Object.entries(await raw.hgetallBuffer(key))
        .flat()
        .map((p) => Buffer.from(p)),
    );
  else if (type === 'list') parts.push(...(await raw.lrangeBuffer(key, 0, -1)));
  else if (type === 'set') parts.push(...(await raw.smembersBuffer(key)));
  else if (type === 'string') parts.push((await raw.getBuffer(key)) ?? Buffer.alloc(0));
  parts.push((await raw.dumpBuffer(key)) ?? Buffer.alloc(0));
  return Buffer.concat(parts);
}

/**
 * The keys holding `identity` (in the name, or in the value, as bytes or as base64url, or inside a rate-limit key's
 * base64url-encoded name), each named by its part after the hash tag; a rate-limit key by its budget (`:rl:ingest`).
 */
async function holders(prefix: string, identity: string): Promise<string[]> {
  const bytes = Buffer.from(identity, 'latin1');
  const encoded = Buffer.from(bytes.toString('base64url'));
  const names: string[] = [];
  for (const key of await keysOf(prefix)) {
    const name = key.toString('latin1');
    const rl = name.indexOf(':rl:');
    const decoded = rl < 0 ? Buffer.alloc(0) : Buffer.from(name.slice(rl + 4), 'base64url');
    const value = await valueOf(key);
    if ([key, decoded, value].some((part) => part.includes(bytes) || part.includes(encoded)))
      names.push(rl < 0 ? name.slice(name.indexOf('}') + 1) : `:rl:${decoded.toString('latin1').split(':')[0]}`);
  }
  return names.sort();
}

async function removeAll(prefix: string): Promise<void> {
  for (const key of await keysOf(prefix)) await raw.del(key);
}

describe('erasure on Redis', () => {
  it('leaves no byte of the pseudonym in any key name or value, store and rate limiter alike', async () => {
    const prefix = `erasure-${randomBytes(6).toString('hex')}:`;
    const store = await RedisStore.open({ url: server.url, prefix, shards: 4 }, OPTIONS);
    const limiter = new RedisRateLimiterStore(store.redis, store.keys);
    const [erased, kept, other, hidden] = [id(1), id(2), id(3), id(4)];
    try {
      await store.recordHeartbeats(
        [
          { identity: erased, channel: 'home' },
          { identity: kept, channel: 'home' },
          { identity: other, channel: null },
        ],
        T0,
      );
      // Opted out, on another channel, then left: the erased one is in seen, left, hidden and a channel's set.
      await store.recordHeartbeats(
        [
          { identity: erased, channel: 'shop', presence: false },
          { identity: hidden, channel: 'shop', presence: false },
        ],
        T0 + 11 * MINUTE,
      );
      await store.recordLeaves([erased], T0 + 11 * MINUTE + 1000);
      for (const identity of [erased, kept, other])
        for (const budget of ['ingest', 'read']) await limiter.take(`${budget}:${identity}`, RATE, T0 + 11 * MINUTE);
      await store.settle(T0 + 12 * MINUTE);
      assert.deepEqual(
        await holders(prefix, erased),
        [':ch:home', ':hidden', ':left', ':rl:ingest', ':rl:read', ':seen'],
        'before: the pseudonym is where the test looks',
      );

      assert.equal(await store.erase([erased], T0 + 12 * MINUTE), 1);
      await limiter.forget(BUDGETS.map((budget) => `${budget}:${erased}`));
      await store.settle(T0 + 13 * MINUTE);

      assert.deepEqual(await holders(prefix, erased), [], 'after: nowhere');
      assert.deepEqual(
        await holders(prefix, kept),
        [':ch:home', ':rl:ingest', ':rl:read', ':seen'],
        'the pseudonym not erased is still found',
      );
      assert.deepEqual(await store.presence([erased, kept, hidden], null, T0 + 13 * MINUTE), [
        { online: false, lastSeenMs: null },
        { online: false, lastSeenMs: T0 },
        { online: false, lastSeenMs: null },
      ]);
    } finally {
      await store.close();
      await removeAll(prefix);
    }
  });

  it('the history falls at the erasure and does not rise again at the timeout, for one online or one that left', async () => {
    const prefix = `erasure-${randomBytes(6).toString('hex')}:`;
    const store = await RedisStore.open({ url: server.url, prefix, shards: 4 }, OPTIONS);
    try {
      await store.recordHeartbeats(
        [
          { identity: id(1), channel: 'home' },
          { identity: id(2), channel: null },
          { identity: id(3), channel: null },
        ],
        T0 + 1000,
      );
      await store.recordLeaves([id(3)], T0 + 10_000);
      await store.erase([id(3)], T0 + 20_000);
      await store.erase([id(1)], T0 + 30_000);
      // id(2) times out at T0 + 10 min + 1001 ms; the erased ones' timeouts must change nothing.
      const nowMs = T0 + 13 * MINUTE;
      await store.settle(nowMs);
      const total = await store.concurrency({ channel: null, interval: 'minute', fromMs: T0, toMs: nowMs }, nowMs);
      assert.deepEqual(
        total.map((p) => [p.max, p.min]),
        [[3, 0], ...Array(9).fill([1, 1]), [1, 0], [0, 0], [0, 0]],
      );
      const home = await store.concurrency({ channel: 'home', interval: 'minute', fromMs: T0, toMs: nowMs }, nowMs);
      assert.deepEqual(
        home.map((p) => p.max),
        [1, ...Array(12).fill(0)],
      );
      assert.equal(await store.countOnline(nowMs), 0);
    } finally {
      await store.close();
      await removeAll(prefix);
    }
  });

  it('an erasure keeps its place among the heartbeats sent to Redis in the same call', async () => {
    const prefix = `erasure-${randomBytes(6).toString('hex')}:`;
    const store = await RedisStore.open({ url: server.url, prefix, shards: 4 }, OPTIONS);
    try {
      await store.recordHeartbeats([{ identity: id(1), channel: null }], T0);
      // Same turn: one script call for the shard; the erasure is queued at once, the heartbeats a tick later.
      const [found] = await Promise.all([
        store.erase([id(1), id(1)], T0 + 1000),
        store.recordHeartbeats([{ identity: id(1), channel: null }], T0 + 1000),
      ]);
      assert.equal(found, 1, 'found once, although named twice');
      assert.deepEqual(await store.presence([id(1)], null, T0 + 1000), [{ online: true, lastSeenMs: T0 + 1000 }]);
      const [today] = await store.dailyActivity(['2026-03-10']);
      assert.deepEqual([today?.active, today?.new], [2, 2], 'the heartbeat after the erasure is of a new identity');
    } finally {
      await store.close();
      await removeAll(prefix);
    }
  });
});
