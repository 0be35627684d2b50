// One process per data directory: the in-memory indexes are only right if nobody else writes the database.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { DataDirError, DataDirLockedError } from './errors.js';

export const LOCK_FILE = 'online-stats.lock';
const SQLITE_HEADER = 'SQLite format 3\0';

/**
 * Takes the lock, or throws DataDirLockedError; returns its release.
 *
 * The lock is SQLite's own exclusive lock (an fcntl lock the kernel holds on the file) on a small
 * database of its own: the kernel drops it when the process dies however it dies, and it does not
 * depend on process ids, which two containers sharing a volume (separate PID namespaces) both
 * see as 1. A file holding a pid let both start and count half each. The file is never deleted:
 * unlinking it while another process waits on it would let a third lock a new file beside it.
 */
export function lockDataDir(dataDir: string): () => void {
  try {
    return takeLock(dataDir);
  } catch (error) {
    throw DataDirError.from(dataDir, error);
  }
}

function takeLock(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, LOCK_FILE);
  // Versions before this one wrote their pid as text here: one still running holds the directory.
  if (existsSync(path) && !isDatabase(path)) {
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    if (Number.isInteger(pid) && pid !== process.pid && alive(pid)) throw new DataDirLockedError(dataDir);
    unlinkSync(path);
  }
  const db = new Database(path, { timeout: 0 });
  try {
    // Exclusive locking mode: after the first write the connection keeps its lock until it closes.
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('CREATE TABLE IF NOT EXISTS holder (only INTEGER PRIMARY KEY CHECK (only = 1), host TEXT, pid INTEGER)');
    db.prepare('INSERT OR REPLACE INTO holder VALUES (1, ?, ?)').run(hostname(), process.pid);
  } catch (error) {
    db.close();
    if ((error as { code?: unknown }).code === 'SQLITE_BUSY') throw new DataDirLockedError(dataDir);
    throw error;
  }
  return () => {
    if (db.open) db.close();
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isDatabase(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const header = Buffer.alloc(SQLITE_HEADER.length);
    const read = readSync(fd, header, 0, header.length, 0);
    return read === 0 || header.toString('latin1') === SQLITE_HEADER;
  } finally {
    closeSync(fd);
  }
}
