// The Store contract, run against the embedded SQLite store on real database files.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { createCalendar } from '../src/calendar.js';
import { HLL_REGISTERS, hllAdd, hllCount } from '../src/store/hll.js';
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

describe('SQLite data written by an earlier version', () => {
  it('keeps its weekly actives: the sketches in daily_activity rows move to day_sketches on open', async () => {
    const own = mkdtempSync(join(tmpdir(), 'online-stats-earlier-'));
    const path = join(own, 'earlier.sqlite');
    const db = new Database(path);
    db.exec(
      'CREATE TABLE daily_activity (day TEXT PRIMARY KEY, active INTEGER NOT NULL DEFAULT 0, ' +
        'new INTEGER NOT NULL DEFAULT 0, sketch BLOB) WITHOUT ROWID',
    );
    const registers = new Uint8Array(HLL_REGISTERS);
    for (let n = 0; n < 2000; n++) hllAdd(registers, randomBytes(16).toString('latin1'));
    db.prepare('INSERT INTO daily_activity VALUES (?, ?, ?, ?)').run('2026-03-09', 2000, 2000, Buffer.from(registers));
    db.close();

    const options = {
      heartbeatTimeoutMs: 600_000,
      maxDays: 30,
      maxChannels: 10,
      calendar: createCalendar('UTC'),
      historyMinuteDays: 14,
    };
    const store = SqliteStore.open(path, options, Date.UTC(2026, 2, 10, 12));
    try {
      assert.equal(await store.distinctActive('2026-03-03', '2026-03-09'), hllCount(registers));
      assert.deepEqual(await store.dailyActivity(['2026-03-09']), [{ day: '2026-03-09', active: 2000, new: 2000 }]);
    } finally {
      await store.close();
    }
    const after = new Database(path, { readonly: true });
    const columns = after.prepare<[], { name: string }>('PRAGMA table_info(daily_activity)').all();
    after.close();
    rmSync(own, { recursive: true, force: true });
    assert.deepEqual(
      columns.map((column) => column.name),
      ['day', 'active', 'new'],
    );
  });
});
