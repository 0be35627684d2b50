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
import type { Store, StoreOptions } from '../src/store/store.js';
import { until } from './support/poll.js';
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

describe('SQLite identities before the opt-out', () => {
  it('get the hidden column on open, everyone visible, and their rows keep counting', async () => {
    const own = mkdtempSync(join(tmpdir(), 'online-stats-earlier-'));
    const path = join(own, 'earlier.sqlite');
    const db = new Database(path);
    db.exec(
      'CREATE TABLE identities (id BLOB PRIMARY KEY, first_seen_ms INTEGER NOT NULL, ' +
        'last_seen_ms INTEGER NOT NULL, left_ms INTEGER) WITHOUT ROWID',
    );
    const nowMs = Date.UTC(2026, 2, 10, 12);
    const id = randomBytes(16);
    db.prepare('INSERT INTO identities VALUES (?, ?, ?, NULL)').run(id, nowMs - 60_000, nowMs - 60_000);
    db.close();
    const store = SqliteStore.open(path, sqliteOptions(), nowMs);
    try {
      assert.deepEqual(await store.presence([id.toString('latin1')], null, nowMs), [
        { online: true, lastSeenMs: nowMs - 60_000 },
      ]);
      assert.equal(await store.countOnline(nowMs), 1);
    } finally {
      await store.close();
      rmSync(own, { recursive: true, force: true });
    }
  });
});

describe('SQLite retention purge', () => {
  it('deletes identities past --retention-days in small batches, off the event loop, and counts stay exact', async () => {
    const own = mkdtempSync(join(tmpdir(), 'online-stats-purge-'));
    const path = join(own, 'purge.sqlite');
    const DAY = 86_400_000;
    const t0 = Date.UTC(2026, 2, 10, 12);
    const options = sqliteOptions({ retentionDays: 2 });
    const pseudonym = (n: number) => Buffer.from(`purge-${n}`.padEnd(16, '.')).toString('latin1');
    let store = SqliteStore.open(path, options, t0);
    try {
      // 5,000 stale (five purge batches) and 10 still kept, 2 of them beating again while the purge runs.
      for (let n = 0; n < 5000; n += 500)
        await store.recordHeartbeats(
          Array.from({ length: 500 }, (_, k) => ({ identity: pseudonym(n + k), channel: 'old' })),
          t0,
        );
      await store.recordHeartbeats(
        Array.from({ length: 10 }, (_, k) => ({ identity: pseudonym(10_000 + k), channel: null })),
        t0 + DAY,
      );
      // A restart past the retention, then the clock in steps of 10 s, each folded before the next: the purge starts a
      // minute after the start whatever the folds in between.
      const restartMs = t0 + 2 * DAY + 1000;
      store = await reopenSqlite(store, path, options, restartMs);
      for (let step = 0; step <= 7; step++) {
        await store.recordHeartbeats([{ identity: pseudonym(10_001), channel: null }], restartMs + step * 10_000);
        await new Promise((done) => setTimeout(done, 300));
      }
      const later = restartMs + 80_000;
      await store.recordHeartbeats([{ identity: pseudonym(10_000), channel: null }], later);
      await store.recordHeartbeats([{ identity: pseudonym(0), channel: null }], later);
      const view = new Database(path, { readonly: true });
      const count = view.prepare<[], number>('SELECT COUNT(*) FROM identities').pluck();
      await until(
        async () => count.get(),
        (rows) => rows === 11,
        10_000,
        'identity rows (10 kept and one stale that came back)',
      );
      view.close();
      assert.equal(await store.countActive(t0 - DAY, later), 11, 'the purged leave the active counts');
      assert.equal(await store.countActive(t0 + DAY - 1, later), 11);
      const [back] = await store.presence([pseudonym(0)], null, later);
      assert.deepEqual(back, { online: true, lastSeenMs: later });
      store = await reopenSqlite(store, path, options, later + 1000);
      assert.equal(await store.countActive(t0 - DAY, later + 1000), 11, 'the same after a restart');
    } finally {
      await store.close();
      rmSync(own, { recursive: true, force: true });
    }
  });
});

function sqliteOptions(overrides: Partial<StoreOptions> = {}): StoreOptions {
  return {
    heartbeatTimeoutMs: 600_000,
    maxDays: 30,
    maxChannels: 10,
    calendar: createCalendar('UTC'),
    historyMinuteDays: 14,
    ...overrides,
  };
}

async function reopenSqlite(store: Store, path: string, options: StoreOptions, nowMs: number): Promise<SqliteStore> {
  await store.close();
  return SqliteStore.open(path, options, nowMs);
}
