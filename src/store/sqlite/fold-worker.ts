// The fold's thread: reads journal groups from the file and folds them into the database on its own connection.
import { openSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { createFold, createPurge } from './fold.js';
import { readRange, type JournalRange } from './journal.js';

/** What the store tells the fold's thread when it starts. */
export interface FoldWorkerData {
  databasePath: string;
  journalPath: string;
  /** SQLite's max_page_count, as the store's own connection has it (null: none). */
  maxPageCount: number | null;
}

/**
 * What the store asks: fold these ranges (whole groups, oldest first), then, if asked, delete a batch of identities
 * past the retention; at close it terminates the thread.
 */
export interface FoldRequest {
  type: 'fold';
  ranges: JournalRange[];
  purge: { beforeMs: number; limit: number } | null;
}
/**
 * What the thread answers: folded through `seq` (-1: no ranges) and the identities purged with their last heartbeat
 * (null: no purge was asked for), or failed (nothing of the request committed).
 */
export type FoldReply =
  { type: 'folded'; seq: number; purged: [string, number][] | null } | { type: 'failed'; seq: number; message: string };

const port = parentPort;
if (port === null) throw new Error('fold-worker.ts runs as a worker thread');
const data = workerData as FoldWorkerData;
const db = new Database(data.databasePath);
// FULL: a fold is durable when it commits, so the journal's groups it folded may be written over.
db.pragma('synchronous = FULL');
db.pragma('busy_timeout = 5000');
// Deleted rows are overwritten with zeros, not left in free space: an erased pseudonym leaves the file (privacy.md).
db.pragma('secure_delete = ON');
if (data.maxPageCount !== null) db.pragma(`max_page_count = ${data.maxPageCount}`);
const journal = openSync(data.journalPath, 'r');
const fold = createFold(db);
const purge = createPurge(db);

port.on('message', (request: FoldRequest) => {
  const seq = request.ranges[request.ranges.length - 1]?.lastSeq ?? -1;
  try {
    const erased = request.ranges.length > 0 && fold(request.ranges.flatMap((range) => readRange(journal, range)));
    // The pages that held an erased identity, as the WAL still has them, leave with it: the checkpoint writes the
    // zeroed pages into the database and truncates the WAL (waiting, up to the busy timeout, for a reader to finish).
    if (erased) db.pragma('wal_checkpoint(TRUNCATE)');
    const purged =
      request.purge === null
        ? null
        : purge(request.purge.beforeMs, request.purge.limit).map(([id, lastSeenMs]): [string, number] => [
            id.toString('latin1'),
            lastSeenMs,
          ]);
    port.postMessage({ type: 'folded', seq, purged } satisfies FoldReply);
  } catch (error) {
    port.postMessage({ type: 'failed', seq, message: (error as Error).message } satisfies FoldReply);
  }
});
