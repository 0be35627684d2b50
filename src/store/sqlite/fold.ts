// The fold: journal groups into the identity tables, one write per identity per fold, in key order (docs/storage.md).
import type Database from 'better-sqlite3';
import type { JournalGroup } from './journal.js';

/** The meta keys of the journal's two positions: folded into the tables, and counted in the saved aggregates. */
export const FOLDED_KEY = 'journal-folded';
export const SAVED_KEY = 'journal-saved';

/** What one identity's records of a fold come to. */
interface Folded {
  firstMs: number | null;
  lastMs: number | null;
  /** When it left after its last heartbeat of the fold (null: it did not). */
  leftMs: number | null;
  /** A leave cleared its channels: the rows before it go. */
  cleared: boolean;
  /** Erased: its rows go before anything after the erasure is written. */
  erased: boolean;
  /** Its last heartbeat opted out of presence lookups. */
  hidden: boolean;
  /** Its channels after the last leave, with the last heartbeat on each. */
  channels: Map<string, number>;
}

/** Reads a journal position from the meta table (-1: none yet). */
export function readPosition(db: Database.Database, key: string): number {
  const value = db.prepare<[string], string>('SELECT value FROM meta WHERE key = ?').pluck().get(key);
  return value === undefined ? -1 : Number(value);
}

/** Prepares the fold's statements on `db` (the worker's own connection); a fold answers whether it erased anyone. */
export function createFold(db: Database.Database): (groups: readonly JournalGroup[]) => boolean {
  const upsert = db.prepare<[Buffer, number, number, number | null, number]>(
    'INSERT INTO identities (id, first_seen_ms, last_seen_ms, left_ms, hidden) VALUES (?, ?, ?, ?, ?) ' +
      'ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms, left_ms = excluded.left_ms, ' +
      'hidden = excluded.hidden',
  );
  const erase = db.prepare<[Buffer]>('DELETE FROM identities WHERE id = ?');
  const leave = db.prepare<[number, Buffer]>('UPDATE identities SET left_ms = ? WHERE id = ?');
  const clear = db.prepare<[Buffer]>('DELETE FROM channel_presence WHERE id = ?');
  const presence = db.prepare<[Buffer, string, number]>(
    'INSERT INTO channel_presence (id, channel, last_seen_ms) VALUES (?, ?, ?) ' +
      'ON CONFLICT (id, channel) DO UPDATE SET last_seen_ms = excluded.last_seen_ms',
  );
  const position = db.prepare<[string, string]>(
    'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
  );
  return db.transaction((groups: readonly JournalGroup[]): boolean => {
    const byIdentity = new Map<string, Folded>();
    for (const group of groups)
      for (const record of group.records) {
        let folded = byIdentity.get(record.identity);
        if (folded === undefined) {
          folded = {
            firstMs: null,
            lastMs: null,
            leftMs: null,
            cleared: false,
            erased: false,
            hidden: false,
            channels: new Map(),
          };
          byIdentity.set(record.identity, folded);
        }
        if (record.kind === 'erase') {
          // What came before is gone: the identity starts again from nothing.
          folded.firstMs = null;
          folded.lastMs = null;
          folded.leftMs = null;
          folded.cleared = true;
          folded.erased = true;
          folded.hidden = false;
          folded.channels.clear();
        } else if (record.kind === 'leave') {
          folded.leftMs = record.atMs;
          folded.cleared = true;
          folded.channels.clear();
        } else {
          folded.firstMs ??= record.atMs;
          folded.lastMs = record.atMs;
          folded.leftMs = null;
          folded.hidden = record.hidden === true;
          if (record.channel !== null) folded.channels.set(record.channel, record.atMs);
        }
      }
    // Key order: neighbouring pseudonyms share B-tree pages, so each page is written once per fold.
    const identities = [...byIdentity.keys()].sort();
    let erased = false;
    for (const identity of identities) {
      const folded = byIdentity.get(identity) as Folded;
      const id = Buffer.from(identity, 'latin1');
      if (folded.erased) {
        erase.run(id);
        erased = true;
      }
      if (folded.lastMs !== null)
        upsert.run(id, folded.firstMs as number, folded.lastMs, folded.leftMs, folded.hidden ? 1 : 0);
      else if (folded.leftMs !== null) leave.run(folded.leftMs, id);
      if (folded.cleared) clear.run(id);
      for (const [channel, atMs] of folded.channels) presence.run(id, channel, atMs);
    }
    const last = groups[groups.length - 1];
    if (last !== undefined) position.run(FOLDED_KEY, String(last.seq));
    return erased;
  });
}

/**
 * Deletes at most `limit` identities last seen before `beforeMs` (--retention-days), oldest first, in one short
 * transaction: what it deleted, so the store's indexes forget them too.
 */
export function createPurge(db: Database.Database): (beforeMs: number, limit: number) => [Buffer, number][] {
  const purge = db
    .prepare<[number, number, number], [Buffer, number]>(
      'DELETE FROM identities WHERE last_seen_ms < ? AND id IN ' +
        '(SELECT id FROM identities WHERE last_seen_ms < ? ORDER BY last_seen_ms LIMIT ?) RETURNING id, last_seen_ms',
    )
    .raw();
  const clear = db.prepare<[Buffer]>('DELETE FROM channel_presence WHERE id = ?');
  return db.transaction((beforeMs: number, limit: number) => {
    const purged = purge.all(beforeMs, beforeMs, limit);
    for (const [id] of purged) clear.run(id);
    return purged;
  });
}
