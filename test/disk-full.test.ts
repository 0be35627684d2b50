// A full disk: readiness fails while commits fail, the log says so once (with a count) instead of once per request,
// the WAL hands its room back when space returns, and SIGTERM still exits 0 and releases the lock. The disk is full
// for real as SQLite sees it: its max_page_count (--max-database-size) makes a real file answer SQLITE_FULL.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { buildApp } from '../src/app.js';
import { ManualClock } from '../src/clock.js';
import { defaultConfig } from '../src/config.js';
import { storeOptions } from '../src/open-store.js';
import { DATABASE_FILE, SqliteStore } from '../src/store/sqlite.js';
import { SECRET, T0, lockIsFree, startServer, tempDir } from './support/app.js';

const KIB = 1024;
const unlimited = ['--rate-limit', 'off', '--read-rate-limit', 'off', '--address-rate-limit', 'off'];

/** Room taken by another writer (another file on the volume, as it were); dropping it frees that room. */
function addBallast(path: string, bytes: number): void {
  const db = new Database(path);
  try {
    db.exec('CREATE TABLE IF NOT EXISTS ballast (b BLOB)');
    db.prepare('INSERT INTO ballast (b) VALUES (zeroblob(?))').run(bytes);
  } finally {
    db.close();
  }
}

function dropBallast(path: string): void {
  const db = new Database(path);
  try {
    db.exec('DROP TABLE ballast');
  } finally {
    db.close();
  }
}

interface LogLine {
  level: number;
  msg: string;
  repeated?: number;
}

describe('disk full', () => {
  const dirs: { remove(): void }[] = [];
  after(() => dirs.forEach((dir) => dir.remove()));

  it('readiness fails while commits fail, one warning per reason instead of one per refused request, and the WAL is truncated once space returns', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const path = join(dir.path, DATABASE_FILE);
    const clock = new ManualClock(T0);
    const config = defaultConfig({ dataDir: dir.path, ingestRateLimit: null, addressRateLimit: null });
    // Heartbeats go to the journal first: those acknowledged before the first fold fails (up to a fold's worth) wait
    // there, and are folded once space returns, so the room freed below is larger than a fold.
    const store = SqliteStore.open(path, storeOptions(config), clock.nowMs(), { maxDatabaseBytes: 8192 * KIB });
    const lines: LogLine[] = [];
    const app = await buildApp({
      config,
      store,
      clock,
      identitySecret: SECRET,
      logger: { level: 'warn', stream: { write: (line: string) => lines.push(JSON.parse(line) as LogLine) } },
    });
    try {
      addBallast(path, 7680 * KIB);
      let filled = false;
      for (let batch = 0; batch < 2000 && !filled; batch++) {
        const beats = Array.from({ length: 100 }, (_, n) => ({ identity: `fill-${batch}-${n}`, channel: null }));
        filled = await store.recordHeartbeats(beats, clock.nowMs()).then(
          () => false,
          () => true,
        );
      }
      assert.ok(filled, 'the database reached its size: commits fail with SQLITE_FULL');

      const refused = await Promise.all(
        Array.from({ length: 200 }, (_, n) =>
          app.inject({ method: 'POST', url: '/heartbeat', headers: { 'x-client-id': `refused-${n}` } }),
        ),
      );
      for (const response of refused) {
        assert.equal(response.statusCode, 503);
        assert.equal(response.json().code, 'OS_STORE_UNAVAILABLE');
      }
      const ready = await app.inject({ url: '/readyz' });
      assert.equal(ready.statusCode, 503, '/readyz fails while the store cannot commit');
      const warnings = lines.filter((line) => line.msg.startsWith('request refused'));
      assert.ok(warnings.length <= 2, `${warnings.length} warning lines for 201 refused requests`);

      const wal = `${path}-wal`;
      dropBallast(path);
      assert.equal((await app.inject({ url: '/readyz' })).statusCode, 200, 'ready again once space is back');
      assert.equal(statSync(wal).size, 0, 'the WAL was truncated, handing its room back to the disk');
      const back = await app.inject({ method: 'POST', url: '/heartbeat', headers: { 'x-client-id': 'back' } });
      assert.equal(back.statusCode, 200);
    } finally {
      await app.close();
      await store.close();
    }
    const summary = lines.find((line) => line.msg.includes('more like it'));
    assert.equal(summary?.repeated, 199, 'the 199 refusals not written are counted in one line');
  });

  it('heartbeats waiting for the fold are refused when the fold fails, not left waiting', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const clock = new ManualClock(T0);
    const config = defaultConfig({ dataDir: dir.path });
    const store = SqliteStore.open(join(dir.path, DATABASE_FILE), storeOptions(config), clock.nowMs(), {
      maxDatabaseBytes: 512 * KIB,
    });
    try {
      // More than the store lets wait for the fold (65,536 records), one batch per turn: the last ones wait for room,
      // and the fold that would make it fails (SQLITE_FULL).
      const pending: Promise<unknown>[] = [];
      for (let batch = 0; batch < 50; batch++) {
        const beats = Array.from({ length: 2000 }, (_, n) => ({ identity: `wait-${batch}-${n}`, channel: null }));
        pending.push(store.recordHeartbeats(beats, clock.nowMs()));
        await new Promise((resolve) => setImmediate(resolve));
      }
      const settled = await Promise.race([
        Promise.allSettled(pending),
        new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), 20_000)),
      ]);
      assert.notEqual(settled, 'waiting', 'every heartbeat is answered');
      const refused = (settled as PromiseSettledResult<unknown>[]).filter((result) => result.status === 'rejected');
      assert.ok(refused.length > 0, 'the fold failed, so some heartbeats were refused');
      for (const result of refused) assert.equal((result.reason as { code?: string }).code, 'OS_STORE_UNAVAILABLE');
    } finally {
      // The final fold fails as well (the disk is still full): close says so, after closing.
      await store.close().catch((error: unknown) => assert.match(String(error), /final save failed/));
    }
  });

  it('SIGTERM while the disk is full exits 0 with one line, and releases the data directory lock', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const path = join(dir.path, DATABASE_FILE);
    const args = ['--data-dir', dir.path, '--identity-secret', SECRET, ...unlimited];
    const first = await startServer(args);
    await fetch(`${first.url}/readyz`); // answered once the signal handlers are in place
    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0);
    // Fuller than the limit below: the first commit fails, and today's activity is left to be saved at shutdown.
    addBallast(path, 256 * KIB);

    const server = await startServer([...args, '--max-database-size', '64k']);
    try {
      const beat = await fetch(`${server.url}/heartbeat`, { method: 'POST', headers: { 'x-client-id': 'a' } });
      assert.equal(beat.status, 503);
      assert.equal((await fetch(`${server.url}/readyz`)).status, 503);
      server.child.kill('SIGTERM');
      assert.equal(await server.exited, 0, server.stdout() + server.stderr());
    } finally {
      server.child.kill('SIGKILL');
    }
    assert.ok(lockIsFree(dir.path), 'the data directory lock is released');
    const log = server.stdout();
    assert.doesNotMatch(log + server.stderr(), /(\n|\\n)\s+at /, 'no stack');
    const shutdown = log.split('\n').filter((line) => /final save|shutdown failed/.test(line));
    assert.equal(shutdown.length, 1, log);
    assert.match(shutdown[0] as string, /database or disk is full/);
  });
});
