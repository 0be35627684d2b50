// The Store contract, run against the Redis store on a real redis-server this file starts (standalone).
import { after, before } from 'node:test';
import { RedisStore } from '../src/store/redis.js';
import type { Store } from '../src/store/store.js';
import { storeSuite } from './store.suite.js';
import { startRedis, type RedisServer } from './support/redis-server.js';

let server: RedisServer;
before(async () => {
  server = await startRedis();
});
after(async () => {
  await server?.stop();
});

const prefixes = new WeakMap<Store, string>();
let stores = 0;

storeSuite('redis (standalone)', {
  async create(options) {
    // Each store gets its own key prefix: stores in one test never see each other's data.
    const prefix = `t${stores++}:`;
    const store = await RedisStore.open({ url: server.url, prefix, shards: 16 }, options);
    prefixes.set(store, prefix);
    return store;
  },
  async reopen(store, options) {
    const prefix = prefixes.get(store) as string;
    await store.close();
    const reopened = await RedisStore.open({ url: server.url, prefix, shards: 16 }, options);
    prefixes.set(reopened, prefix);
    return reopened;
  },
});
