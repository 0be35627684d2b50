// The Store contract, run against the embedded SQLite store on real database files.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../src/store/sqlite.js';
import type { Store } from '../src/store/store.js';
import { storeSuite } from './store.suite.js';

const dir = mkdtempSync(join(tmpdir(), 'online-stats-store-'));
const paths = new WeakMap<Store, string>();
let files = 0;

storeSuite('sqlite', {
  async create(options, nowMs) {
    const path = join(dir, `store-${files++}.sqlite`);
    const store = SqliteStore.open(path, options, nowMs);
    paths.set(store, path);
    return store;
  },
  async reopen(store, options, nowMs) {
    const path = paths.get(store) as string;
    await store.close();
    const reopened = SqliteStore.open(path, options, nowMs);
    paths.set(reopened, path);
    return reopened;
  },
  async teardown() {
    rmSync(dir, { recursive: true, force: true });
  },
});
