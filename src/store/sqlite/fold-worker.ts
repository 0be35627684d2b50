// The fold's thread: reads journal groups from the file and folds them into the database on its own connection.
import { openSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { createFold } from './fold.js';
import { readRange, type JournalRange } from './journal.js';

/** What the store tells the fold's thread when it starts. */
export interface FoldWorkerData {
  databasePath: string;
  journalPath: string;
  /** SQLite's max_page_count, as the store's own connection has it (null: none). */
  maxPageCount: number | null;
}

/** What the store asks: fold these ranges (whole groups, oldest first); at close it terminates the thread. */
export interface FoldRequest {
  type: 'fold';
  ranges: JournalRange[];
}
/** What the thread answers: folded through `seq`, or failed (nothing of the request committed). */
export type FoldReply = { type: 'folded'; seq: number } | { type: 'failed'; seq: number; message: string };

const port = parentPort;
if (port === null) throw new Error('fold-worker.ts runs as a worker thread');
const data = workerData as FoldWorkerData;
const db = new Database(data.databasePath);
// FULL: a fold is durable when it commits, so the journal's groups it folded may be written over.
db.pragma('synchronous = FULL');
db.pragma('busy_timeout = 5000');
if (data.maxPageCount !== null) db.pragma(`max_page_count = ${data.maxPageCount}`);
const journal = openSync(data.journalPath, 'r');
const fold = createFold(db);

port.on('message', (request: FoldRequest) => {
  const seq = request.ranges[request.ranges.length - 1]?.lastSeq ?? -1;
  try {
    fold(request.ranges.flatMap((range) => readRange(journal, range)));
    port.postMessage({ type: 'folded', seq } satisfies FoldReply);
  } catch (error) {
    port.postMessage({ type: 'failed', seq, message: (error as Error).message } satisfies FoldReply);
  }
});
