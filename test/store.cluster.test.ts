// The Store contract, run against the Redis store on a three-master Redis Cluster this file starts and tears down.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createCalendar } from '../src/calendar.js';
import { Pseudonymizer } from '../src/identity.js';
import { RedisStore } from '../src/store/redis.js';
import type { Store } from '../src/store/store.js';
import { storeSuite } from './store.suite.js';
import { redisCommand, startRedisCluster, type RedisCluster } from './support/redis-server.js';

let cluster: RedisCluster;
before(async () => {
  cluster = await startRedisCluster(3);
});
after(async () => {
  await cluster?.stop();
});

const prefixes = new WeakMap<Store, string>();
let stores = 0;

storeSuite('redis (cluster of three masters)', {
  async create(options) {
    const prefix = `t${stores++}:`;
    const store = await RedisStore.open({ url: cluster.url, prefix, shards: 16 }, options);
    prefixes.set(store, prefix);
    return store;
  },
  async reopen(store, options) {
    const prefix = prefixes.get(store) as string;
    await store.close();
    const reopened = await RedisStore.open({ url: cluster.url, prefix, shards: 16 }, options);
    prefixes.set(reopened, prefix);
    return reopened;
  },
});

describe('Redis store on a Cluster', () => {
  it('spreads online identities over every master, so no one slot or node holds them all', async () => {
    const options = {
      heartbeatTimeoutMs: 600_000,
      maxDays: 400,
      maxChannels: 10,
      calendar: createCalendar('UTC'),
      historyMinuteDays: 14,
    };
    const store = await RedisStore.open({ url: cluster.url, prefix: 'spread:', shards: 16 }, options);
    try {
      const nowMs = Date.UTC(2026, 2, 10, 12);
      const pseudonyms = new Pseudonymizer('a test secret of at least thirty-two characters');
      const beats = Array.from({ length: 2000 }, (_, n) => ({
        identity: pseudonyms.pseudonym(`id:client-${n}`),
        channel: null,
      }));
      await store.recordHeartbeats(beats, nowMs);
      assert.equal(await store.countOnline(nowMs), 2000);
      const perNode: number[] = [];
      for (const node of cluster.nodes) {
        const reply = await redisCommand(node.port, "EVAL \"return #redis.call('KEYS', '{spread:*}:seen')\" 0");
        perNode.push(Number(reply?.slice(1)));
      }
      assert.equal(
        perNode.reduce((a, b) => a + b, 0),
        16,
        `the 16 shards' sorted sets, by node: ${perNode.join(', ')}`,
      );
      for (const count of perNode)
        assert.ok(count > 0 && count < 16, `every master holds some shards but not all: ${perNode.join(', ')}`);
    } finally {
      await store.close();
    }
  });
});
