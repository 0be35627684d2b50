// The embedded default store: SQLite (WAL) for durability, in-memory indexes for O(1)/O(days) counts.
// One job (the Store contract on SQLite); its indexes, sketch and batcher are in their own files.
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { TurnBatcher } from '../batcher.js';
import { shiftDay } from '../calendar.js';
import { flagOf } from '../config.js';
import { ConfigError, DataDirError, StoreUnavailableError } from '../errors.js';
import { ActivityIndex } from './activity-index.js';
import { LRUCache } from 'lru-cache';
import { HLL_REGISTERS, hllAdd, hllCount, hllMergeInto } from './hll.js';
import {
  ConcurrencyTracker,
  HOUR_BLOB_BYTES,
  HOUR_MS,
  MINUTE_MS,
  TOTAL,
  floorTo,
  mergeMinute,
  peakOf,
  bucketsOf,
  pointsOf,
  readMinutes,
  summariseSlots,
  type HourRow,
  type MinuteFigures,
} from './concurrency.js';
import { ChannelIndex, OnlineIndex } from './online-index.js';
import { FOLDED_KEY, SAVED_KEY, readPosition } from './sqlite/fold.js';
import type { FoldReply, FoldRequest, FoldWorkerData } from './sqlite/fold-worker.js';
import { JOURNAL_SUFFIX, Journal, type JournalGroup, type JournalRange, type JournalRecord } from './sqlite/journal.js';
import { SqliteOutbox } from './sqlite/outbox.js';
import { SettledWindows } from './window-cache.js';
import type {
  ChannelCount,
  ConcurrencyPeak,
  ConcurrencyPoint,
  ConcurrencyQuery,
  CountObserver,
  DayActivity,
  HeartbeatRecord,
  PresenceRecord,
  OutboxEntry,
  RecordOutcome,
  Store,
  StoreOptions,
} from './store.js';
import { DEFAULT_OUTBOX_MAX } from './store.js';

/** The database's file name in the data directory (with its -wal and -shm beside it). */
export const DATABASE_FILE = 'online-stats.sqlite';

/** Where the database of a data directory is. */
export function databasePath(dataDir: string): string {
  return join(dataDir, DATABASE_FILE);
}

const SCHEMA = readFileSync(new URL('./sqlite/schema.sql', import.meta.url), 'utf8');
/** How often (at most) stale channel rows are pruned and today's sketch is saved, in ms. */
const HOUSEKEEPING_INTERVAL_MS = 60_000;
/** Completed minutes kept in memory while commits fail, at most (about 100 bytes each). */
const MAX_UNSAVED_MINUTES = 100_000;
/** Room a readiness probe writes (and frees) after a failed commit, in bytes: enough for hundreds of new identities. */
const PROBE_BYTES = 65_536;

/** What the SQLite store needs beyond the Store contract's options. */
export interface SqliteFileOptions {
  /** Of the identity secret in use; see `SqliteStore.open`. */
  secretFingerprint?: string;
  /** Largest the database may grow, in bytes (SQLite's max_page_count); null or absent: as the disk allows. */
  maxDatabaseBytes?: number | null;
  /** SQLite's page cache for this connection, in bytes; absent: SQLite's default (2 MiB). */
  cacheBytes?: number;
}

type Pending =
  | {
      kind: 'beats';
      beats: readonly HeartbeatRecord[];
      nowMs: number;
      done: (outcome: RecordOutcome) => void;
      fail: (error: Error) => void;
    }
  | { kind: 'leaves'; identities: readonly string[]; nowMs: number; done: () => void; fail: (error: Error) => void }
  | {
      kind: 'erase';
      identities: readonly string[];
      nowMs: number;
      done: (found: number) => void;
      fail: (error: Error) => void;
    }
  | { kind: 'settle'; nowMs: number; done: () => void; fail: (error: Error) => void }
  | { kind: 'work'; run: () => void; nowMs: number; done: () => void; fail: (error: Error) => void };

/**
 * An identity with heartbeats (or an erasure) in the journal that the database's view does not hold yet: what the view
 * says (`tableMs`), what is true (`currentMs`, null once erased), whether its last heartbeat opted out of presence
 * lookups, and, while a fold that holds its last record is in flight, what the view will say once that fold is in
 * (`foldMs`; undefined: no such fold). countActive corrects the view's count of one minute with it.
 */
interface Unfolded {
  tableMs: number | null;
  currentMs: number | null;
  hidden: boolean;
  lastSeq: number;
  foldMs: number | null | undefined;
}

/** How often the aggregates are saved and the journal's new groups handed to the fold, in ms. */
const SAVE_INTERVAL_MS = 200;
/** Records written since the last fold request past which the next save does not wait for the interval. */
const FOLD_EARLY_RECORDS = 16_384;
/**
 * Records written and not folded yet, at most: past it heartbeats wait for the fold (backpressure), so a fold slower
 * than the heartbeats, or failing (a full disk), leaves a bounded backlog to fold: about 5 MB of rows at most.
 */
const MAX_UNFOLDED_RECORDS = 65_536;
/**
 * Identities past the retention deleted per fold request, at most: one short transaction on the fold's thread, so a
 * purge of millions goes by in small steps between folds and never holds the heartbeats' journal (measured in
 * docs/benchmarks.md).
 */
const PURGE_BATCH = 1_000;
/** How often the fold's thread looks for identities past the retention once a look found less than a batch, in ms. */
const PURGE_INTERVAL_MS = 60_000;
const DAY_MS = 86_400_000;
/** The view's memory map: room for a database of about 20M identities; beyond it, reads fall back to read(). */
const VIEW_MMAP_BYTES = 2 * 1024 ** 3;

interface HourRowData {
  hour_ms: number;
  max: number;
  max_at_ms: number;
  min: number;
  mean_sum: number;
  recorded: number;
  minutes: Buffer | null;
}

interface DaySketch {
  day: string;
  registers: Uint8Array;
  dirty: boolean;
}

const toBlob = (identity: string): Buffer => Buffer.from(identity, 'latin1');
/**
 * The key of a view lookup, written into one kept buffer rather than a new one per lookup: SQLite copies a bound blob,
 * so the buffer is free again as soon as the statement runs. Pseudonyms are 16 bytes; anything else gets its own.
 */
const lookupKey = Buffer.alloc(16);
function keyOf(identity: string): Buffer {
  if (identity.length !== lookupKey.length) return toBlob(identity);
  lookupKey.write(identity, 0, 'latin1');
  return lookupKey;
}
/** A day without a saved sketch (no activity). */
const NO_SKETCH = 0;

/**
 * Heartbeats and leaves queued in one turn of the event loop go to the journal as one group, acknowledged once an
 * fdatasync on libuv's pool has made it durable; a worker thread folds the journal into the identity tables, and the
 * aggregates (daily counts, history, peaks) are saved every SAVE_INTERVAL_MS. Counts come from in-memory indexes,
 * rebuilt at start from the database and the journal's groups not folded yet (docs/storage.md).
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  private readonly db: Database.Database;
  /**
   * A second connection for the identity tables, which only the fold writes (a connection of its own keeps its
   * statements apart from the transactions of `db`). Not held on a read transaction: a reader that never lets go
   * would keep the WAL from ever starting over, and it would grow without bound.
   */
  private readonly view: Database.Database;
  private readonly online: OnlineIndex;
  private readonly channels: ChannelIndex;
  private readonly activity: ActivityIndex;
  private readonly writes = new TurnBatcher<Pending>((batch) => this.flush(batch));
  private closed = false;
  /** Latest time seen: times are made monotonic so the online index stays ordered. */
  private lastNowMs = -Infinity;
  private lastHousekeepingMs = -Infinity;
  /** Why the last write failed (a full disk, an I/O error), until one succeeds again: readiness reports it. */
  private commitFailure: Error | null = null;
  private today: DaySketch | null = null;
  private readonly settled = new SettledWindows();
  /** Unions of the finished days of windows that reach today: 8 of 16 KiB. */
  private readonly settledUnions = new LRUCache<string, Uint8Array>({ max: 8 });
  /**
   * Sketches of finished days, read from the database once: consecutive windows of /analytics/daily
   * share all but one day. 64 of 16 KiB: 1 MiB.
   */
  private readonly finishedSketches = new LRUCache<string, Uint8Array | typeof NO_SKETCH>({ max: 64 });
  private readonly statements;
  private readonly viewStatements;
  private readonly history = new ConcurrencyTracker();
  /** Minutes completed but not saved yet (a failed save keeps them for the next). */
  private unsavedMinutes: { key: string; minute: MinuteFigures }[] = [];
  /** The newest hour's minute slots of each series as saved, so a save that raises a minute reads no row. */
  private readonly hourBlobs = new Map<string, { hourMs: number; blob: Buffer }>();
  private lastHistoryPruneMs = -Infinity;
  readonly outbox: SqliteOutbox;
  private observer: CountObserver | null = null;
  /** What the observer raised that is not saved yet: saved before the heartbeats that raised it are acknowledged. */
  private observed: { entries: OutboxEntry[]; state: string | null } = { entries: [], state: null };
  /** Called after each group is durable with its size and the time from its write to its acknowledgement (metrics). */
  onCommit: ((heartbeats: number, durationMs: number) => void) | null = null;

  private readonly journal: Journal;
  private worker: Worker | null = null;
  /** The last group folded into the tables (and taken in), and the last one the saved aggregates count. */
  private foldedSeq: number;
  private savedSeq: number;
  /** The last group of the fold in flight (null: none). */
  private foldingSeq: number | null = null;
  /** Groups written and not yet handed to the fold, oldest first, and their records. */
  private toFold: JournalGroup[] = [];
  private recordsToFold = 0;
  private readonly unfolded = new Map<string, Unfolded>();
  /**
   * Unfolded identities by the minute of `tableMs`: what countActive corrects in the view's count of a minute long
   * past (the other side, identities the view does not have in a recent minute yet, is found by a scan, see there).
   */
  private readonly unfoldedByTableMinute = new Map<number, Set<Unfolded>>();
  /** Sketches of days that ended since the last save. */
  private readonly unsavedSketches = new Map<string, Buffer>();
  /** Daily actives and new identities counted since the last save. */
  private unsavedDays = new Map<string, { active: number; new: number }>();
  /** Those of a save in progress (counted until it commits). */
  private savingDays = new Map<string, { active: number; new: number }>();
  /** Each series' all-time peak and running minute as saved, so a save writes only what rose since. */
  private readonly savedPeaks = new Map<string, number>();
  private readonly savedRunning = new Map<string, { startMs: number; max: number }>();
  /** Batches waiting for the journal's other segment to be folded (a fold slower than the heartbeats, for a while). */
  private stalled: Pending[] = [];
  private readonly saveTimer: NodeJS.Timeout;
  private saving: Promise<void> | null = null;
  private foldWaiters: (() => void)[] = [];
  /** An erasure is in the journal: once it is folded, the journal is wiped (see wipeJournal). */
  private wipeAfterSeq: number | null = null;
  /** New writes wait while the journal is brought to all folded for a wipe. */
  private quiescing = false;
  /** When the last purge found fewer than a batch (it looks again PURGE_INTERVAL_MS later, by the callers' clock). */
  private lastPurgeDoneMs: number;
  private readonly retentionMs: number;

  private constructor(
    db: Database.Database,
    private readonly path: string,
    private readonly options: StoreOptions,
    nowMs: number,
    private readonly maxPageCount: number | null,
  ) {
    this.db = db;
    this.retentionMs = (options.retentionDays ?? options.maxDays) * DAY_MS;
    // The first look for identities past the retention comes a minute after the start, not with the first save.
    this.lastPurgeDoneMs = nowMs;
    this.online = new OnlineIndex(options.heartbeatTimeoutMs);
    this.channels = new ChannelIndex(options.heartbeatTimeoutMs, options.maxChannels);
    this.activity = new ActivityIndex(options.maxDays);
    this.statements = {
      addDay: db.prepare<[string, number, number]>(
        'INSERT INTO daily_activity (day, active, new) VALUES (?, ?, ?) ' +
          'ON CONFLICT (day) DO UPDATE SET active = active + excluded.active, new = new + excluded.new',
      ),
      pruneChannels: db.prepare<[number]>('DELETE FROM channel_presence WHERE last_seen_ms < ?'),
      saveSketch: db.prepare<[string, Buffer]>(
        'INSERT INTO day_sketches (day, sketch) VALUES (?, ?) ON CONFLICT (day) DO UPDATE SET sketch = excluded.sketch',
      ),
      // One range scan rather than a lookup per day.
      dayCounts: db.prepare<[string, string], { day: string; active: number; new: number }>(
        'SELECT day, active, new FROM daily_activity WHERE day >= ? AND day <= ?',
      ),
      daySketch: db.prepare<[string], Buffer>('SELECT sketch FROM day_sketches WHERE day = ?').pluck(),
      hourRow: db.prepare<[string, number], HourRowData>(
        'SELECT hour_ms, max, max_at_ms, min, mean_sum, recorded, minutes FROM concurrency_hours WHERE channel = ? AND hour_ms = ?',
      ),
      hoursBetween: db.prepare<[string, number, number], HourRowData>(
        'SELECT hour_ms, max, max_at_ms, min, mean_sum, recorded, minutes FROM concurrency_hours ' +
          'WHERE channel = ? AND hour_ms >= ? AND hour_ms < ? ORDER BY hour_ms',
      ),
      saveHour: db.prepare<[string, number, number, number, number, number, number, Buffer]>(
        'INSERT INTO concurrency_hours (channel, hour_ms, max, max_at_ms, min, mean_sum, recorded, minutes) ' +
          'VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel, hour_ms) DO UPDATE SET max = excluded.max, ' +
          'max_at_ms = excluded.max_at_ms, min = excluded.min, mean_sum = excluded.mean_sum, ' +
          'recorded = excluded.recorded, minutes = excluded.minutes',
      ),
      savePeak: db.prepare<[string, number, number]>(
        'INSERT INTO concurrency_peaks (channel, online, at_ms) VALUES (?, ?, ?) ON CONFLICT (channel) ' +
          'DO UPDATE SET online = excluded.online, at_ms = excluded.at_ms WHERE excluded.online > online',
      ),
      dropMinutes: db.prepare<[number]>(
        'UPDATE concurrency_hours SET minutes = NULL WHERE hour_ms < ? AND minutes IS NOT NULL',
      ),
      dropHours: db.prepare<[number]>('DELETE FROM concurrency_hours WHERE hour_ms < ?'),
      position: db.prepare<[string, string]>(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ),
      probe: db.prepare<[number]>("INSERT OR REPLACE INTO meta (key, value) VALUES ('write-probe', zeroblob(?))"),
      unprobe: db.prepare("DELETE FROM meta WHERE key = 'write-probe'"),
    };
    this.outbox = new SqliteOutbox(
      db,
      options.outboxMax ?? DEFAULT_OUTBOX_MAX,
      (run) => new Promise((done, fail) => this.enqueue({ kind: 'work', run, nowMs: -Infinity, done, fail })),
    );
    this.foldedSeq = readPosition(db, FOLDED_KEY);
    this.savedSeq = Math.max(readPosition(db, SAVED_KEY), this.foldedSeq);
    const { journal, unfolded } = Journal.open(journalPath(path), this.foldedSeq);
    this.journal = journal;
    this.view = new Database(path);
    this.view.pragma('busy_timeout = 5000');
    // Point lookups read pages through a memory map, not a read() and a copy into SQLite's own cache each: half the
    // cost of a 1,000-id presence lookup at 1M identities (docs/benchmarks.md, case 10). Address space only; the pages
    // are the kernel's page cache, shared with the fold's connection.
    this.view.pragma(`mmap_size = ${VIEW_MMAP_BYTES}`);
    this.viewStatements = {
      lastSeen: this.view.prepare<[Buffer], number>('SELECT last_seen_ms FROM identities WHERE id = ?').pluck(),
      presence: this.view
        .prepare<[Buffer], [number, number]>('SELECT last_seen_ms, hidden FROM identities WHERE id = ?')
        .raw(),
      folded: this.view.prepare<[], string>(`SELECT value FROM meta WHERE key = '${FOLDED_KEY}'`).pluck(),
      countSeenBetween: this.view
        .prepare<[number, number], number>(
          'SELECT COUNT(*) FROM identities WHERE last_seen_ms >= ? AND last_seen_ms < ?',
        )
        .pluck(),
    };
    this.replay(nowMs, unfolded);
    try {
      this.probe();
    } catch (error) {
      // A database already past its room (a full disk): heartbeats are refused from the first, and readiness says why.
      this.commitFailure = error as Error;
    }
    this.saveTimer = setInterval(() => void this.save(), SAVE_INTERVAL_MS);
    this.saveTimer.unref();
    void this.save();
  }

  /**
   * The indexes from the tables, then the journal's groups not folded yet, in order; the history goes on from the
   * counts as they are then. Of the groups the saved aggregates do not count yet, the daily counts are counted again,
   * and the highest count each series reached is saved as its all-time peak and in its minute, as the running save
   * would have: a crash loses neither.
   */
  private replay(nowMs: number, groups: readonly JournalGroup[]): void {
    this.rebuild(nowMs);
    this.lastNowMs = -Infinity;
    const highs = new Map<string, { online: number; atMs: number }>();
    const raise = (key: string, online: number, atMs: number) => {
      if (online > (highs.get(key)?.online ?? 0)) highs.set(key, { online, atMs });
    };
    for (const group of groups) {
      const counted = group.seq > this.savedSeq;
      for (const record of group.records) {
        const atMs = Math.max(record.atMs, this.lastNowMs);
        this.lastNowMs = atMs;
        if (record.kind === 'leave') {
          this.applyLeave(record.identity, atMs);
          continue;
        }
        if (record.kind === 'erase') {
          this.applyErase(record.identity, atMs, group.seq);
          this.wipeAfterSeq = group.seq;
          continue;
        }
        const channel = this.applyBeat(
          record.identity,
          record.channel,
          record.hidden === true,
          atMs,
          group.seq,
          counted,
        );
        if (!counted) continue;
        raise(TOTAL, this.online.count(atMs), atMs);
        if (channel !== null) raise(channel, this.channels.count(channel, atMs), atMs);
      }
    }
    this.lastNowMs = Math.max(nowMs, this.lastNowMs);
    this.startHistory(this.lastNowMs);
    this.db.transaction(() => {
      for (const [key, high] of highs) {
        if (high.online > this.history.allTimePeak(key).online) {
          this.history.loadPeak(key, high);
          this.statements.savePeak.run(key, high.online, high.atMs);
          this.savedPeaks.set(key, high.online);
        }
        this.raiseMinute(key, high.online, high.atMs);
      }
    })();
    this.endViewRead();
    this.toFold = [...groups];
    this.recordsToFold = groups.reduce((sum, group) => sum + group.records.length, 0);
  }

  /** Raises the saved highest count of the minute holding `atMs` to `online`, keeping the rest of what it holds. */
  private raiseMinute(key: string, online: number, atMs: number): void {
    const startMs = floorTo(atMs, MINUTE_MS);
    const hourMs = floorTo(startMs, HOUR_MS);
    const row = this.statements.hourRow.get(key, hourMs);
    const saved = row?.minutes
      ? readMinutes(row.minutes, hourMs).find((minute) => minute.startMs === startMs)
      : undefined;
    if (saved !== undefined && saved.max >= online) return;
    this.saveMinute(key, {
      startMs,
      max: online,
      maxAtMs: atMs,
      min: saved?.min ?? (atMs === startMs ? online : 0),
      mean: saved?.mean ?? 0,
    });
  }

  /**
   * The history goes on from the counts rebuilt from the database (no false dip after a restart), with the all-time
   * peaks as saved; from now on every change of a count is reported by the indexes at its instant.
   */
  private startHistory(nowMs: number): void {
    const peaks = this.db.prepare<[], { channel: string; online: number; at_ms: number }>(
      'SELECT channel, online, at_ms FROM concurrency_peaks',
    );
    for (const row of peaks.iterate()) {
      this.history.loadPeak(row.channel, { online: row.online, atMs: row.at_ms });
      this.savedPeaks.set(row.channel, row.online);
    }
    this.history.start(TOTAL, nowMs, this.online.count(nowMs));
    for (const [channel, count] of this.channels.counts(nowMs)) this.history.start(channel, nowMs, count);
    this.online.onChange = (atMs, count) => {
      this.history.change(TOTAL, atMs, count);
      this.observer?.change(TOTAL, atMs, count);
    };
    this.channels.observe((channel, atMs, count) => {
      this.history.change(channel, atMs, count);
      this.observer?.change(channel, atMs, count);
    });
  }

  async observe(observer: CountObserver, nowMs: number): Promise<void> {
    this.assertOpen();
    const atMs = Math.max(nowMs, this.lastNowMs);
    const counts = new Map<string, number>([[TOTAL, this.online.count(atMs)]]);
    for (const [channel, count] of this.channels.counts(atMs)) counts.set(channel, count);
    observer.restore(this.outbox.savedState(), counts, this.history.allTimePeaks(), atMs);
    this.observer = observer;
    this.takeObserved();
    await new Promise<void>((done, fail) =>
      this.enqueue({ kind: 'work', run: () => {}, nowMs: -Infinity, done, fail }),
    );
  }

  /** Takes what the observer raised into `observed`; whether anything waits to be saved. */
  private takeObserved(): boolean {
    const taken = this.observer?.take();
    if (taken) {
      // Not without bound while commits fail: the newest are kept.
      const entries = [...this.observed.entries, ...taken.entries];
      const max = this.options.outboxMax ?? DEFAULT_OUTBOX_MAX;
      this.observed = { entries: entries.length > max ? entries.slice(-max) : entries, state: taken.state };
    }
    return this.observed.entries.length > 0 || this.observed.state !== null;
  }

  /** In a transaction: what the observer raised; forgotten once the transaction commits (see savedObserved). */
  private writeObserved(nowMs: number): void {
    if (this.observed.entries.length > 0 || this.observed.state !== null)
      this.outbox.insert(this.observed.entries, this.observed.state, nowMs);
  }

  private savedObserved(): void {
    if (this.observed.entries.length > 0 || this.observed.state !== null) this.observed = { entries: [], state: null };
  }

  /**
   * Opens (creating if need be) the database at `path` (a file: the journal and the fold's thread stand beside it)
   * and rebuilds the in-memory indexes.
   * `secretFingerprint`: of the identity secret in use. The first open records it; a later open
   * under another secret is refused (ConfigError), since every known user would count again as new.
   */
  static open(path: string, options: StoreOptions, nowMs: number, files: SqliteFileOptions = {}): SqliteStore {
    let db: Database.Database;
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      refuseEmpty(path);
      db = new Database(path);
    } catch (error) {
      throw DataDirError.from(path, error);
    }
    try {
      restrictToOwner(path);
      // NORMAL: this connection's saves are not fsynced on the event loop. What they hold is in the journal until the
      // fold's next commit (FULL) makes them durable with it, so a power loss loses none of it; the outbox's writes,
      // which the journal does not hold, are made FULL one by one (see flush).
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
      // Negative: in KiB rather than pages.
      if (files.cacheBytes !== undefined) db.pragma(`cache_size = -${Math.ceil(files.cacheBytes / 1024)}`);
      db.exec(SCHEMA);
      moveSketches(db);
      addHiddenColumn(db);
      // Deleted rows are overwritten with zeros, not left in free space (docs/privacy.md).
      db.pragma('secure_delete = ON');
      // Checkpoints run on the fold's thread, after its commits, never on the event loop.
      db.pragma('wal_autocheckpoint = 0');
      let maxPageCount: number | null = null;
      if (files.maxDatabaseBytes !== undefined && files.maxDatabaseBytes !== null) {
        const pageBytes = db.pragma('page_size', { simple: true }) as number;
        // Past it SQLite answers SQLITE_FULL, as a full disk does; it never goes below the current size.
        maxPageCount = Math.max(1, Math.floor(files.maxDatabaseBytes / pageBytes));
        db.pragma(`max_page_count = ${maxPageCount}`);
      }
      if (files.secretFingerprint !== undefined) checkSecret(db, path, files.secretFingerprint);
      return new SqliteStore(db, path, options, nowMs, maxPageCount);
    } catch (error) {
      db.close();
      throw DataDirError.from(path, error);
    }
  }

  /** The indexes as the tables have them. */
  private rebuild(nowMs: number): void {
    const cutoffMs = nowMs - this.options.heartbeatTimeoutMs;
    const online = this.db.prepare<[number], { id: Buffer; last_seen_ms: number }>(
      'SELECT id, last_seen_ms FROM identities WHERE last_seen_ms >= ? AND left_ms IS NULL ORDER BY last_seen_ms',
    );
    for (const row of online.iterate(cutoffMs)) this.online.touch(row.id.toString('latin1'), row.last_seen_ms);
    const presence = this.db.prepare<[number], { id: Buffer; channel: string; last_seen_ms: number }>(
      'SELECT id, channel, last_seen_ms FROM channel_presence WHERE last_seen_ms >= ? ORDER BY last_seen_ms',
    );
    for (const row of presence.iterate(cutoffMs))
      this.channels.touch(row.channel, row.id.toString('latin1'), row.last_seen_ms);
    // The covering index gives the per-minute counts without reading the table.
    this.activity.add(nowMs, 0);
    const perMinute = this.db.prepare<[], [number, number]>(
      'SELECT last_seen_ms / 60000, COUNT(*) FROM identities GROUP BY last_seen_ms / 60000',
    );
    for (const [minute, count] of perMinute.raw().iterate()) this.activity.add(minute * 60_000, count);
    this.loadToday(nowMs);
  }

  /** Today's sketch: what was saved, plus everyone whose last heartbeat is today (exactly today's actives). */
  private loadToday(nowMs: number): void {
    const { key, startMs } = this.options.calendar.dayOf(nowMs);
    const registers = new Uint8Array(HLL_REGISTERS);
    const saved = this.statements.daySketch.get(key);
    if (saved) registers.set(saved.subarray(0, HLL_REGISTERS));
    const todays = this.db.prepare<[number], Buffer>('SELECT id FROM identities WHERE last_seen_ms >= ?').pluck();
    for (const id of todays.iterate(startMs)) hllAdd(registers, id.toString('latin1'));
    this.today = { day: key, registers, dirty: false };
  }

  recordHeartbeats(beats: readonly HeartbeatRecord[], nowMs: number): Promise<RecordOutcome> {
    return new Promise((done, fail) => this.enqueue({ kind: 'beats', beats, nowMs, done, fail }));
  }

  recordLeaves(identities: readonly string[], nowMs: number): Promise<void> {
    return new Promise((done, fail) => this.enqueue({ kind: 'leaves', identities, nowMs, done, fail }));
  }

  erase(identities: readonly string[], nowMs: number): Promise<number> {
    return new Promise((done, fail) => this.enqueue({ kind: 'erase', identities, nowMs, done, fail }));
  }

  /**
   * From the unfolded set, else the view (one read transaction for all): the last heartbeat and the opt-out. Online
   * from the in-memory indexes.
   */
  async presence(identities: readonly string[], channel: string | null, nowMs: number): Promise<PresenceRecord[]> {
    this.assertOpen();
    const cutoffMs = nowMs - this.retentionMs;
    const answers: PresenceRecord[] = [];
    try {
      for (const identity of identities) {
        const entry = this.unfolded.get(identity);
        let lastSeenMs: number | null = null;
        let hidden = false;
        if (entry !== undefined) {
          lastSeenMs = entry.currentMs;
          hidden = entry.hidden;
        } else {
          this.viewRead();
          const row = this.viewStatements.presence.get(keyOf(identity));
          if (row !== undefined) [lastSeenMs, hidden] = [row[0], row[1] === 1];
        }
        if (lastSeenMs === null || lastSeenMs < cutoffMs || hidden) {
          answers.push({ online: false, lastSeenMs: null });
          continue;
        }
        // Only one seen within the timeout can be online: the rest need no look at the indexes.
        const online =
          nowMs - lastSeenMs <= this.options.heartbeatTimeoutMs &&
          (channel === null
            ? this.online.lastSeen(identity, nowMs) !== undefined
            : this.channels.lastSeen(channel, identity, nowMs) !== undefined);
        answers.push({ online, lastSeenMs });
      }
    } finally {
      this.endViewRead();
    }
    return answers;
  }

  private enqueue(pending: Pending): void {
    if (this.closed) {
      pending.fail(new StoreUnavailableError('closed'));
      return;
    }
    this.writes.add(pending);
  }

  /**
   * Applies the batch to the indexes, writes its heartbeats and leaves to the journal as one group, runs its other
   * writes (the outbox's) in one transaction, and acknowledges once the group is durable.
   */
  private flush(batch: readonly Pending[]): void {
    // Heartbeats are refused at once while writes fail, rather than waiting for room the fold cannot make.
    if (this.commitFailure !== null && (this.stalled.length > 0 || !this.journalHasRoom(batchBytes(batch)))) {
      const failure = new StoreUnavailableError(this.commitFailure.message, { cause: this.commitFailure });
      const waiting = [...this.stalled, ...batch];
      this.stalled = [];
      for (const pending of waiting) if (journaled(pending)) pending.fail(failure);
      batch = waiting.filter((pending) => !journaled(pending));
    }
    // A group larger than half a segment is split by request; a request alone larger than that is refused.
    const limit = this.journal.segmentBytes / 2;
    const groupBytes = batchBytes(batch);
    if (groupBytes > limit) {
      let chunk: Pending[] = [];
      let chunkBytes = 0;
      for (const pending of batch) {
        const bytes = batchBytes([pending]);
        if (bytes > limit) {
          pending.fail(
            new StoreUnavailableError(`a request of ${bytes} bytes of heartbeats is larger than the journal takes`),
          );
          continue;
        }
        if (chunkBytes + bytes > limit) {
          this.flush(chunk);
          chunk = [];
          chunkBytes = 0;
        }
        chunk.push(pending);
        chunkBytes += bytes;
      }
      if (chunk.length > 0) this.flush(chunk);
      return;
    }
    if (this.stalled.length > 0 || this.quiescing || !this.journalHasRoom(groupBytes)) {
      this.stalled.push(...batch);
      return;
    }
    const startedMs = performance.now();
    const seq = this.journal.nextSeq;
    const records: JournalRecord[] = [];
    const outcomes: RecordOutcome[] = [];
    const works: Pending[] = [];
    const refused: Pending[] = [];
    const found: number[] = [];
    let heartbeats = 0;
    try {
      this.applyBatch(batch, seq, records, outcomes, found, works, refused, (count) => (heartbeats += count));
    } finally {
      this.endViewRead();
    }
    if (refused.length > 0) {
      const failure = new StoreUnavailableError((this.commitFailure as Error).message, { cause: this.commitFailure });
      for (const pending of refused) pending.fail(failure);
    }
    const refusedSet = new Set(refused);
    const accepted = refused.length === 0 ? batch : batch.filter((pending) => !refusedSet.has(pending));
    try {
      if (records.length > 0) {
        this.toFold.push(this.journal.append(records, this.foldedSeq) as JournalGroup);
        this.recordsToFold += records.length;
        // A fold of many is cheaper per identity, but one of too many holds the journal (and a failure shows late).
        if (this.recordsToFold >= FOLD_EARLY_RECORDS) void this.save();
      }
      // The outbox's writes, and the events this batch raised: durable before the heartbeats are acknowledged.
      const observed = this.takeObserved() && this.observed.entries.length > 0;
      if (works.length > 0 || observed) {
        this.db.pragma('synchronous = FULL');
        try {
          this.db.transaction(() => {
            for (const work of works) if (work.kind === 'work') work.run();
            this.writeObserved(this.lastNowMs);
          })();
        } finally {
          this.db.pragma('synchronous = NORMAL');
        }
      }
      this.savedObserved();
    } catch (error) {
      this.commitFailure = error as Error;
      const failure = new StoreUnavailableError((error as Error).message, { cause: error });
      for (const pending of accepted) pending.fail(failure);
      return;
    }
    const acknowledge = () => {
      this.onCommit?.(heartbeats, performance.now() - startedMs);
      let outcome = 0;
      let erasure = 0;
      for (const pending of accepted) {
        if (pending.kind === 'beats') pending.done(outcomes[outcome++] as RecordOutcome);
        else if (pending.kind === 'erase') pending.done(found[erasure++] as number);
        else pending.done();
      }
    };
    if (records.length === 0) acknowledge();
    else
      this.journal.sync().then(acknowledge, (error: unknown) => {
        this.commitFailure = error as Error;
        const failure = new StoreUnavailableError((error as Error).message, { cause: error });
        for (const pending of accepted) pending.fail(failure);
      });
  }

  /** The batch into the indexes and the group's records (see flush). */
  private applyBatch(
    batch: readonly Pending[],
    seq: number,
    records: JournalRecord[],
    outcomes: RecordOutcome[],
    found: number[],
    works: Pending[],
    refused: Pending[],
    counted: (heartbeats: number) => void,
  ): void {
    for (const pending of batch) {
      const nowMs = Math.max(pending.nowMs, this.lastNowMs);
      if (journaled(pending)) {
        // The journal would take them, but they could not be folded: refused until a write succeeds again.
        if (this.commitFailure !== null) {
          refused.push(pending);
          continue;
        }
        if (pending.kind === 'beats') {
          outcomes.push(this.recordBeats(pending.beats, nowMs, seq, records));
          counted(pending.beats.length);
        } else if (pending.kind === 'erase') {
          let known = 0;
          // Each identity once: a name given twice is found once.
          for (const identity of new Set(pending.identities)) {
            if (this.applyErase(identity, nowMs, seq)) known++;
            records.push({ kind: 'erase', identity, atMs: nowMs });
          }
          found.push(known);
          this.wipeAfterSeq = seq;
        } else
          for (const identity of pending.identities) {
            this.applyLeave(identity, nowMs);
            records.push({ kind: 'leave', identity, atMs: nowMs });
          }
        this.lastNowMs = nowMs;
      } else if (pending.kind === 'work') works.push(pending);
      else this.advanceHistory(nowMs);
    }
  }

  /**
   * The last-seen lookups of one batch share one read transaction of the view (one read lock, not one per lookup);
   * it ends with the batch, so no reader keeps the WAL from starting over.
   */
  private viewRead(): void {
    if (!this.view.inTransaction) this.view.exec('BEGIN');
  }

  private endViewRead(): void {
    if (this.view.inTransaction) this.view.exec('COMMIT');
  }

  /** Whether the batch's group fits in the journal now (an upper bound of its size), and in the backlog's bound. */
  private journalHasRoom(groupBytes: number): boolean {
    if (this.recordsToFold + this.recordsFolding >= MAX_UNFOLDED_RECORDS && this.commitFailure === null) return false;
    return this.journal.hasRoom(groupBytes, this.foldedSeq);
  }

  /** The batch's heartbeats into the indexes and the group's records; what the caller is told. */
  private recordBeats(
    beats: readonly HeartbeatRecord[],
    nowMs: number,
    seq: number,
    records: JournalRecord[],
  ): RecordOutcome {
    let channelsRefused = 0;
    for (const { identity, channel, presence } of beats) {
      const hidden = presence === false;
      const tracked = this.applyBeat(identity, channel, hidden, nowMs, seq, true);
      if (channel !== null && tracked === null) channelsRefused++;
      if (hidden) records.push({ kind: 'beat', identity, atMs: nowMs, channel: tracked, hidden });
      else records.push({ kind: 'beat', identity, atMs: nowMs, channel: tracked });
    }
    return { channelsRefused };
  }

  /**
   * One heartbeat into the indexes (and, `counted`, into today's actives): its channel if tracked (null: none, or
   * refused past maxChannels).
   */
  private applyBeat(
    identity: string,
    channel: string | null,
    hidden: boolean,
    nowMs: number,
    seq: number,
    counted: boolean,
  ): string | null {
    const entry = this.unfolded.get(identity);
    const oldMs = this.lastSeenOf(identity, entry, nowMs);
    const { key: dayKey, startMs: dayStartMs } = this.options.calendar.dayOf(nowMs);
    this.rollDay(dayKey);
    if (oldMs === null || oldMs < dayStartMs) {
      const sketch = this.today as DaySketch;
      if (hllAdd(sketch.registers, identity)) sketch.dirty = true;
      if (counted) {
        const day = this.unsavedDays.get(dayKey) ?? { active: 0, new: 0 };
        day.active++;
        // Past the retention an identity is forgotten, whether or not the purge has deleted it yet.
        if (oldMs === null || oldMs < nowMs - this.retentionMs) day.new++;
        this.unsavedDays.set(dayKey, day);
      }
    }
    this.activity.move(oldMs, nowMs);
    this.online.touch(identity, nowMs);
    let tracked: string | null = null;
    if (channel !== null && this.channels.canTouch(channel, nowMs)) {
      this.channels.touch(channel, identity, nowMs);
      tracked = channel;
    }
    this.markUnfolded(identity, entry, oldMs, nowMs, hidden, seq);
    return tracked;
  }

  /** The last heartbeat of `identity` as the store knows it (null: none, or erased), wherever that is kept. */
  private lastSeenOf(identity: string, entry: Unfolded | undefined, nowMs: number): number | null {
    if (entry !== undefined) return entry.currentMs;
    return this.online.lastSeen(identity, nowMs) ?? this.lookUpLastSeen(identity) ?? null;
  }

  private lookUpLastSeen(identity: string): number | undefined {
    this.viewRead();
    return this.viewStatements.lastSeen.get(keyOf(identity));
  }

  /**
   * An erasure into the indexes: offline at once (the history sees the fall), no longer counted as active, and unknown
   * from now on. Whether it was known (seen within the retention).
   */
  private applyErase(identity: string, nowMs: number, seq: number): boolean {
    const entry = this.unfolded.get(identity);
    const oldMs = this.lastSeenOf(identity, entry, nowMs);
    this.online.remove(identity, nowMs);
    this.channels.removeEverywhere(identity, nowMs);
    if (oldMs !== null) this.activity.add(oldMs, -1);
    this.markUnfolded(identity, entry, oldMs, null, false, seq);
    return oldMs !== null && oldMs >= nowMs - this.retentionMs;
  }

  private applyLeave(identity: string, nowMs: number): void {
    this.online.remove(identity, nowMs);
    this.channels.removeEverywhere(identity, nowMs);
  }

  /** Keeps what the view will say of `identity` once its heartbeat at `nowMs` (in group `seq`) is folded. */
  private markUnfolded(
    identity: string,
    entry: Unfolded | undefined,
    oldMs: number | null,
    nowMs: number | null,
    hidden: boolean,
    seq: number,
  ) {
    if (entry === undefined) {
      const created: Unfolded = { tableMs: oldMs, currentMs: nowMs, hidden, lastSeq: seq, foldMs: undefined };
      this.unfolded.set(identity, created);
      if (oldMs !== null) indexAdd(this.unfoldedByTableMinute, oldMs, created);
      return;
    }
    // The fold in flight holds its last record: once it is in, the view says that.
    if (this.foldingSeq !== null && entry.lastSeq <= this.foldingSeq && entry.foldMs === undefined)
      entry.foldMs = entry.currentMs;
    entry.currentMs = nowMs;
    entry.hidden = hidden;
    entry.lastSeq = seq;
  }

  /**
   * Every SAVE_INTERVAL_MS, unless a fold is in flight: the aggregates counted since the last save (daily counts, the
   * history's completed minutes, running minutes and peaks that rose, today's sketch once a minute) in one
   * transaction with the journal position they count to, then the journal's new groups to the fold. One writer at a
   * time: the store never writes while the fold does.
   */
  private save(): Promise<void> {
    if (this.saving !== null || this.foldingSeq !== null || this.closed) return this.saving ?? Promise.resolve();
    this.saving = this.saveNow().finally(() => {
      this.saving = null;
    });
    return this.saving;
  }

  private async saveNow(): Promise<void> {
    const throughSeq = this.journal.nextSeq - 1;
    const nowMs = this.lastNowMs;
    this.advanceHistory(nowMs);
    const days = this.unsavedDays;
    this.unsavedDays = new Map();
    this.savingDays = days;
    const minutes = [...this.unsavedMinutes, ...this.history.takeCompleted()];
    this.unsavedMinutes = [];
    const peaks: { key: string; online: number; atMs: number }[] = [];
    for (const [key, peak] of this.history.allTimePeaks())
      if (peak.atMs !== null && peak.online > (this.savedPeaks.get(key) ?? 0))
        peaks.push({ key, online: peak.online, atMs: peak.atMs });
    const running = this.history.running(nowMs).filter(({ key, minute }) => {
      const saved = this.savedRunning.get(key);
      return saved === undefined || saved.startMs !== minute.startMs || minute.max > saved.max;
    });
    const nothingNew =
      throughSeq <= this.savedSeq &&
      days.size === 0 &&
      minutes.length === 0 &&
      peaks.length === 0 &&
      running.length === 0;
    if (nothingNew && nowMs - this.lastHousekeepingMs < HOUSEKEEPING_INTERVAL_MS) {
      this.requestFold();
      return;
    }
    // What it counts is durable in the journal first: a crash never leaves counted what the journal lost.
    if (throughSeq > this.savedSeq) await this.journal.sync().catch(() => {});
    try {
      this.db.transaction(() => {
        for (const [day, counts] of days) this.statements.addDay.run(day, counts.active, counts.new);
        for (const { key, online, atMs } of peaks) this.statements.savePeak.run(key, online, atMs);
        for (const { key, minute } of minutes) this.saveMinute(key, minute);
        for (const { key, minute } of running) this.saveMinute(key, minute);
        this.housekeeping(nowMs);
        if (this.unsavedSketches.size > 0) this.saveToday();
        this.pruneHistory(nowMs);
        this.statements.position.run(SAVED_KEY, String(Math.max(throughSeq, this.savedSeq)));
      })();
    } catch (error) {
      this.savingDays = new Map();
      // Kept for the next save; the hours cached took this save's minutes, which were rolled back.
      this.hourBlobs.clear();
      this.savedRunning.clear();
      for (const [day, counts] of days) {
        const now = this.unsavedDays.get(day) ?? { active: 0, new: 0 };
        this.unsavedDays.set(day, { active: now.active + counts.active, new: now.new + counts.new });
      }
      this.unsavedMinutes = [...minutes, ...this.unsavedMinutes].slice(-MAX_UNSAVED_MINUTES);
      if (this.today) this.today.dirty = true;
      this.commitFailure = error as Error;
      return;
    }
    this.savingDays = new Map();
    this.savedSeq = Math.max(throughSeq, this.savedSeq);
    for (const { key, online } of peaks) this.savedPeaks.set(key, online);
    for (const { key, minute } of running) this.savedRunning.set(key, { startMs: minute.startMs, max: minute.max });
    this.requestFold();
  }

  /**
   * Hands the groups the saved aggregates count to the fold's thread (one fold in flight at a time), with a batch of
   * the purge when one is due.
   */
  private requestFold(): void {
    if (this.foldingSeq !== null) return;
    const groups = this.toFold.filter((group) => group.seq <= this.savedSeq);
    const purgeDue = this.lastNowMs - this.lastPurgeDoneMs >= PURGE_INTERVAL_MS;
    if (groups.length === 0 && !purgeDue) return;
    this.toFold = this.toFold.slice(groups.length);
    this.recordsToFold = this.toFold.reduce((sum, group) => sum + group.records.length, 0);
    const ranges: JournalRange[] = [];
    for (const group of groups) {
      const last = ranges[ranges.length - 1];
      if (last !== undefined && last.to === group.offset && last.lastSeq === group.seq - 1) {
        last.to += group.bytes;
        last.lastSeq = group.seq;
      } else
        ranges.push({ from: group.offset, to: group.offset + group.bytes, firstSeq: group.seq, lastSeq: group.seq });
    }
    // -1: a request with no groups (a purge only), folded through what was folded already.
    this.foldingSeq = groups[groups.length - 1]?.seq ?? this.foldedSeq;
    this.folding = groups;
    this.recordsFolding = groups.reduce((sum, group) => sum + group.records.length, 0);
    const purge = purgeDue ? { beforeMs: this.lastNowMs - this.retentionMs, limit: PURGE_BATCH } : null;
    this.foldWorker().postMessage({ type: 'fold', ranges, purge } satisfies FoldRequest);
  }

  /** The groups of the fold in flight, given back to toFold when it fails. */
  private folding: JournalGroup[] = [];
  private recordsFolding = 0;

  private foldWorker(): Worker {
    if (this.worker !== null) return this.worker;
    // Compiled, the worker is JavaScript; run from source (tests), the loader the process runs under reads TypeScript.
    const compiled = new URL('./sqlite/fold-worker.js', import.meta.url);
    const file = existsSync(fileURLToPath(compiled)) ? compiled : new URL('./sqlite/fold-worker.ts', import.meta.url);
    const workerData: FoldWorkerData = {
      databasePath: this.path,
      journalPath: journalPath(this.path),
      maxPageCount: this.maxPageCount,
    };
    const worker = file.pathname.endsWith('.ts')
      ? // Hooks a loader registers reach no worker thread in Node 20: the worker registers tsx's itself.
        new Worker(
          `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); ` +
            `return import(${JSON.stringify(file.href)}); });`,
          { eval: true, workerData },
        )
      : new Worker(file, { workerData });
    worker.unref();
    worker.on('message', (reply: FoldReply) => this.folded(reply));
    worker.on('error', (error) => {
      this.worker = null;
      this.folded({ type: 'failed', seq: this.foldingSeq ?? -1, message: error.message });
    });
    this.worker = worker;
    return worker;
  }

  /** The fold's answer: take it in (the unfolded set shrinks, a segment may be reused), or keep the groups. */
  private folded(reply: FoldReply): void {
    const groups = this.folding;
    this.folding = [];
    this.recordsFolding = 0;
    this.foldingSeq = null;
    if (reply.type === 'failed') {
      this.toFold = [...groups, ...this.toFold];
      this.recordsToFold += groups.reduce((sum, group) => sum + group.records.length, 0);
      this.commitFailure = new Error(reply.message);
    } else {
      if (reply.seq >= 0) this.foldedSeq = reply.seq;
      // The save before it and the fold succeeded: writes succeed again.
      if (this.commitFailure !== null) this.recovered();
      this.takeInFold(this.foldedSeq);
      this.forgetPurged(reply.purged);
      this.wipeJournal();
    }
    // Batches waiting for room go on: written now that the fold made room, or refused now that it failed (nothing
    // else would wake them).
    if (this.stalled.length > 0) {
      const stalled = this.stalled;
      this.stalled = [];
      this.flush(stalled);
    }
    const waiters = this.foldWaiters;
    this.foldWaiters = [];
    for (const waiter of waiters) waiter();
  }

  /**
   * Identities the purge deleted (past the retention) leave the activity index; one with heartbeats not folded yet was
   * moved in it already, and the view no longer holds its old row.
   */
  private forgetPurged(purged: readonly [string, number][] | null): void {
    if (purged === null) return;
    if (purged.length < PURGE_BATCH) this.lastPurgeDoneMs = this.lastNowMs;
    for (const [identity, lastSeenMs] of purged) {
      const entry = this.unfolded.get(identity);
      // An entry that read the purged row moved the identity out of that minute already; one made after the purge's
      // commit (its lookup found nothing) did not.
      if (entry?.tableMs !== lastSeenMs) this.activity.add(lastSeenMs, -1);
      if (entry === undefined || entry.tableMs === null) continue;
      indexDelete(this.unfoldedByTableMinute, entry.tableMs, entry);
      entry.tableMs = null;
    }
  }

  /**
   * Once an erasure is folded, the journal, whose folded groups still name the erased, is zeroed: at once when every
   * group is folded, else new writes wait (a fold or two, tens of ms) while what is left is saved and folded.
   */
  private wipeJournal(): void {
    if (this.wipeAfterSeq === null || this.foldedSeq < this.wipeAfterSeq) return;
    const allFolded = this.foldedSeq === this.journal.nextSeq - 1 && this.toFold.length === 0;
    if (allFolded && this.journal.wipe()) {
      this.wipeAfterSeq = null;
      this.quiescing = false;
      return;
    }
    this.quiescing = true;
    // A sync still in flight (or groups to fold): the next save, within SAVE_INTERVAL_MS, folds them and tries again.
    setTimeout(() => {
      if (this.foldingSeq === null && !this.closed) {
        void this.save();
        if (this.toFold.length === 0) this.wipeJournal();
        if (!this.quiescing && this.stalled.length > 0) {
          const stalled = this.stalled;
          this.stalled = [];
          this.flush(stalled);
        }
      }
    }, 1).unref();
  }

  /** The view now holds every group through `seq`: identities with nothing later leave the unfolded set. */
  private takeInFold(seq: number): void {
    for (const [identity, entry] of this.unfolded) {
      if (entry.lastSeq > seq && entry.foldMs === undefined) continue;
      if (entry.tableMs !== null) indexDelete(this.unfoldedByTableMinute, entry.tableMs, entry);
      if (entry.lastSeq <= seq) {
        this.unfolded.delete(identity);
        continue;
      }
      entry.tableMs = entry.foldMs ?? null;
      entry.foldMs = undefined;
      if (entry.tableMs !== null) indexAdd(this.unfoldedByTableMinute, entry.tableMs, entry);
    }
  }

  /** Expiries up to `nowMs` reported, and the minutes that ended by then completed (in memory). */
  private advanceHistory(nowMs: number): void {
    this.online.expire(nowMs);
    this.channels.expire(nowMs);
    this.history.advance(nowMs);
    this.observer?.advance(nowMs);
  }

  /** Merges a minute into its hour's row; a minute older than the minutes kept is not saved. */
  private saveMinute(key: string, minute: MinuteFigures): void {
    const hourMs = floorTo(minute.startMs, HOUR_MS);
    const cached = this.hourBlobs.get(key);
    let blob: Buffer;
    if (cached?.hourMs === hourMs) blob = cached.blob;
    else {
      const row = this.statements.hourRow.get(key, hourMs);
      if (row !== undefined && row.minutes === null) return;
      blob = row?.minutes ?? Buffer.alloc(HOUR_BLOB_BYTES);
      // Only the newest hour of each series is kept: older ones are written once more at most, when they complete.
      if (cached === undefined || hourMs > cached.hourMs) {
        if (cached === undefined && this.hourBlobs.size > 2 * (this.options.maxChannels + 1)) this.hourBlobs.clear();
        this.hourBlobs.set(key, { hourMs, blob });
      }
    }
    mergeMinute(blob, minute);
    const summary = summariseSlots(blob, hourMs);
    this.statements.saveHour.run(
      key,
      hourMs,
      summary.max,
      summary.maxAtMs,
      summary.min,
      summary.meanSum,
      summary.recorded,
      blob,
    );
  }

  /** A new day began: the finished day's sketch waits for the next save, and an empty one starts. */
  private rollDay(dayKey: string): void {
    if (this.today?.day === dayKey) return;
    if (this.today) this.unsavedSketches.set(this.today.day, Buffer.from(this.today.registers));
    this.today = { day: dayKey, registers: new Uint8Array(HLL_REGISTERS), dirty: false };
  }

  /** Drops the minutes and the hours past what is kept, once per housekeeping interval. */
  private pruneHistory(nowMs: number): void {
    if (nowMs - this.lastHistoryPruneMs < HOUSEKEEPING_INTERVAL_MS) return;
    this.lastHistoryPruneMs = nowMs;
    this.statements.dropMinutes.run(floorTo(nowMs - this.options.historyMinuteDays * 86_400_000, HOUR_MS));
    this.statements.dropHours.run(floorTo(nowMs - this.options.maxDays * 86_400_000, HOUR_MS));
  }

  private housekeeping(nowMs: number): void {
    if (nowMs - this.lastHousekeepingMs < HOUSEKEEPING_INTERVAL_MS) return;
    this.lastHousekeepingMs = nowMs;
    this.statements.pruneChannels.run(nowMs - this.options.heartbeatTimeoutMs);
    this.saveToday();
  }

  private saveToday(): void {
    for (const [day, sketch] of this.unsavedSketches) this.statements.saveSketch.run(day, sketch);
    this.unsavedSketches.clear();
    if (!this.today?.dirty) return;
    this.statements.saveSketch.run(this.today.day, Buffer.from(this.today.registers));
    this.today.dirty = false;
  }

  /**
   * Merges identities last seen at given times (the demo's users_data.json), in one transaction:
   * all or nothing (a caller with many writes them in batches, one call each). Idempotent: last seen becomes the
   * later, first seen the earlier of old and new.
   */
  importIdentities(
    entries: Iterable<{ identity: string; lastSeenMs: number }>,
    onProgress?: (done: number) => void,
  ): number {
    const merge = this.db.prepare<[Buffer, number, number]>(
      'INSERT INTO identities (id, first_seen_ms, last_seen_ms) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET ' +
        'last_seen_ms = max(last_seen_ms, excluded.last_seen_ms), first_seen_ms = min(first_seen_ms, excluded.first_seen_ms)',
    );
    let count = 0;
    this.db.transaction(() => {
      for (const { identity, lastSeenMs } of entries) {
        merge.run(toBlob(identity), lastSeenMs, lastSeenMs);
        if (++count % 100_000 === 0) onProgress?.(count);
      }
    })();
    return count;
  }

  async countOnline(nowMs: number, channel?: string): Promise<number> {
    this.assertOpen();
    return channel === undefined ? this.online.count(nowMs) : this.channels.count(channel, nowMs);
  }

  async countActive(sinceMs: number, _nowMs: number): Promise<number> {
    this.assertOpen();
    const endMs = ActivityIndex.minuteEndMs(sinceMs);
    // The fold in flight may have committed before its answer reached this thread: the view reads it already, so the
    // correction must know it too.
    if (this.foldingSeq !== null && Number(this.viewStatements.folded.get() ?? -1) >= this.foldingSeq)
      this.takeInFold(this.foldingSeq);
    return (
      this.activity.countAfterMinuteOf(sinceMs) +
      this.viewStatements.countSeenBetween.get(sinceMs, endMs)! +
      this.unfoldedCorrection(sinceMs, endMs)
    );
  }

  /** What the view counts wrong in [sinceMs, endMs) (one minute): identities whose heartbeats are not folded yet. */
  private unfoldedCorrection(sinceMs: number, endMs: number): number {
    const within = (ms: number | null) => ms !== null && ms >= sinceMs && ms < endMs;
    let correction = 0;
    const minute = Math.floor(sinceMs / MINUTE_MS);
    for (const entry of this.unfoldedByTableMinute.get(minute) ?? [])
      if (within(entry.tableMs) && !within(entry.currentMs)) correction--;
    // An identity's last heartbeat is never older than the oldest record not folded: only a minute that recent (a
    // look-back of a minute or so) can hold one, and only then are they looked at.
    const oldestMs = (this.folding[0] ?? this.toFold[0])?.records[0]?.atMs ?? Infinity;
    if (endMs > oldestMs)
      for (const entry of this.unfolded.values()) if (within(entry.currentMs) && !within(entry.tableMs)) correction++;
    return correction;
  }

  async topChannels(nowMs: number, limit: number): Promise<ChannelCount[]> {
    this.assertOpen();
    return this.channels.top(nowMs, limit);
  }

  async dailyActivity(days: readonly string[]): Promise<DayActivity[]> {
    this.assertOpen();
    if (days.length === 0) return [];
    // Day keys are YYYY-MM-DD, so they compare as dates.
    const first = days.reduce((a, b) => (b < a ? b : a));
    const last = days.reduce((a, b) => (b > a ? b : a));
    const rows = new Map(this.statements.dayCounts.all(first, last).map((row) => [row.day, row]));
    // With what was counted since the last save.
    return days.map((day) => {
      const row = rows.get(day);
      const unsaved = this.unsavedDays.get(day);
      const saving = this.savingDays.get(day);
      return {
        day,
        active: (row?.active ?? 0) + (unsaved?.active ?? 0) + (saving?.active ?? 0),
        new: (row?.new ?? 0) + (unsaved?.new ?? 0) + (saving?.new ?? 0),
      };
    });
  }

  async distinctActive(firstDay: string, lastDay: string): Promise<number> {
    this.assertOpen();
    // Heartbeats are recorded at monotonic times, so no day before today's can change again.
    const today = this.today?.day ?? '';
    return this.settled.get(firstDay, lastDay, today, () => {
      const union = new Uint8Array(HLL_REGISTERS);
      let from = firstDay;
      // A window reaching today: its finished days are merged once, then only today's registers.
      if (firstDay < today && today <= lastDay) {
        union.set(this.settledUnion(firstDay, shiftDay(today, -1)));
        from = today;
      }
      for (const day of this.options.calendar.daysBetween(from, lastDay)) {
        const sketch = this.sketchOf(day);
        if (sketch !== NO_SKETCH) hllMergeInto(union, sketch);
      }
      // Registers all zero count 0.
      return hllCount(union);
    });
  }

  /** The union of the finished days `firstDay` to `lastDay` (kept for today's windows, which ask every read). */
  private settledUnion(firstDay: string, lastDay: string): Uint8Array {
    const key = `${firstDay}..${lastDay}`;
    const cached = this.settledUnions.get(key);
    if (cached) return cached;
    const union = new Uint8Array(HLL_REGISTERS);
    for (const day of this.options.calendar.daysBetween(firstDay, lastDay)) {
      const sketch = this.sketchOf(day);
      if (sketch !== NO_SKETCH) hllMergeInto(union, sketch);
    }
    this.settledUnions.set(key, union);
    return union;
  }

  private sketchOf(day: string): Uint8Array | typeof NO_SKETCH {
    if (day === this.today?.day) return this.today.registers;
    const unsaved = this.unsavedSketches.get(day);
    if (unsaved !== undefined) return unsaved;
    const cached = this.finishedSketches.get(day);
    if (cached !== undefined) return cached;
    const sketch = this.statements.daySketch.get(day) ?? NO_SKETCH;
    if (day < (this.today?.day ?? '')) this.finishedSketches.set(day, sketch);
    return sketch;
  }

  async concurrency(query: ConcurrencyQuery, nowMs: number): Promise<ConcurrencyPoint[]> {
    this.assertOpen();
    const key = query.channel ?? TOTAL;
    const recent = this.recentMinutes(key, nowMs);
    const buckets = bucketsOf(query, nowMs, this.options.calendar);
    if (buckets.length === 0) return [];
    const fromMs = floorTo((buckets[0] as { startMs: number }).startMs, HOUR_MS);
    const toMs = (buckets[buckets.length - 1] as { endMs: number }).endMs;
    // Minutes are decoded only where they are needed: every hour for minute points, else the hours of recent minutes.
    const recentHours = new Set(recent.map((minute) => floorTo(minute.startMs, HOUR_MS)));
    const rows = this.hourRows(key, fromMs, toMs, (hourMs) => query.interval === 'minute' || recentHours.has(hourMs));
    return pointsOf(rows, recent, query.interval, buckets, nowMs);
  }

  async peak(channel: string | null, sinceMs: number | null, nowMs: number): Promise<ConcurrencyPeak> {
    this.assertOpen();
    const key = channel ?? TOTAL;
    const recent = this.recentMinutes(key, nowMs);
    if (sinceMs === null) return this.history.allTimePeak(key);
    const rows = this.hourRows(key, floorTo(sinceMs, HOUR_MS), nowMs + 1, (hourMs) => hourMs < sinceMs);
    return peakOf(rows, recent, sinceMs);
  }

  /** `key`'s minutes not saved yet as of `nowMs`: completed ones waiting for the next commit, then the running one. */
  private recentMinutes(key: string, nowMs: number): MinuteFigures[] {
    this.advanceHistory(Math.max(nowMs, this.lastNowMs));
    this.unsavedMinutes.push(...this.history.takeCompleted());
    const recent = this.unsavedMinutes.filter((entry) => entry.key === key).map((entry) => entry.minute);
    const live = this.history.current(key, nowMs);
    if (live !== null) recent.push(live);
    return recent;
  }

  async settle(nowMs: number): Promise<void> {
    this.assertOpen();
    this.advanceHistory(Math.max(nowMs, this.lastNowMs));
    const observed = this.takeObserved();
    if (!this.history.hasCompleted() && this.unsavedMinutes.length === 0 && !observed) return;
    // The events the expiries raised are saved with the next group; the minutes with the next save.
    await new Promise<void>((done, fail) => this.enqueue({ kind: 'settle', nowMs, done, fail }));
    await this.save();
  }

  private hourRows(key: string, fromMs: number, toMs: number, decode: (hourMs: number) => boolean): HourRow[] {
    return this.statements.hoursBetween.all(key, fromMs, toMs).map((row) => ({
      hourMs: row.hour_ms,
      summary: { max: row.max, maxAtMs: row.max_at_ms, min: row.min, meanSum: row.mean_sum, recorded: row.recorded },
      minutes: row.minutes !== null && decode(row.hour_ms) ? row.minutes : null,
    }));
  }

  /** One process holds the data directory's lock: it is the only one. */
  leads(): boolean {
    return !this.closed;
  }

  /**
   * Ready while commits succeed. After a failed commit, each check is also the retry: a probe write that needs new room
   * in the database and the WAL, as a heartbeat of a new user does; so readiness comes back once space does, even when
   * no traffic reaches an instance that is out of rotation.
   */
  async check(): Promise<void> {
    this.assertOpen();
    try {
      if (this.commitFailure === null) {
        // While the fold writes, it is the check: the store's own connection would only wait for it.
        if (this.foldingSeq === null) this.db.exec('BEGIN IMMEDIATE; ROLLBACK');
        return;
      }
      // Writes failed: the check retries what failed (the fold of what waits, else a write as a new user's needs).
      if (this.foldingSeq !== null) await this.foldAnswered();
      if (this.toFold.length > 0) {
        await this.save();
        if (this.foldingSeq !== null) await this.foldAnswered();
      } else if (this.commitFailure !== null) {
        this.probe();
        this.recovered();
      }
      if (this.commitFailure !== null) throw this.commitFailure;
    } catch (error) {
      const reason = (error as Error).message;
      throw new StoreUnavailableError(this.commitFailure ? `commits fail: ${reason}` : reason, { cause: error });
    }
  }

  /** A write that needs new room in the database and the WAL, as a heartbeat of a new user does. */
  private probe(): void {
    this.db.transaction(() => {
      this.statements.probe.run(PROBE_BYTES);
      this.statements.unprobe.run();
    })();
  }

  /**
   * Space is back: hand the WAL's room back to the disk at once (TRUNCATE), or a WAL that grew while writes failed
   * would keep the space just freed; then the fold goes on with what waited.
   */
  private recovered(): void {
    this.commitFailure = null;
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // Still short of room for the checkpoint: the writes succeed, and the fold's checkpoints retry.
    }
  }

  /** Resolves at the fold's next answer. */
  private foldAnswered(): Promise<void> {
    return new Promise((done) => this.foldWaiters.push(done));
  }

  /**
   * Finishes pending writes: every group acknowledged, the aggregates saved and the journal folded; then saves today's
   * sketch and the running minutes, checkpoints, closes. The database is closed whatever happens; when the final save
   * or fold fails (a full disk), a StoreUnavailableError says so after closing: nothing acknowledged is lost (it is
   * in the journal, replayed at the next open, and today's sketch is rebuilt).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.writes.drain();
    this.closed = true;
    clearInterval(this.saveTimer);
    let failure: unknown = null;
    try {
      await this.saving;
      for (let rounds = 0; rounds < 1000; rounds++) {
        if (this.foldingSeq !== null) await this.foldAnswered();
        const failed = this.commitFailure;
        await this.saveNow();
        if (this.foldingSeq !== null) await this.foldAnswered();
        if ((this.toFold.length === 0 && this.stalled.length === 0) || (failed !== null && this.commitFailure !== null))
          break;
      }
      const refused = new StoreUnavailableError(this.commitFailure?.message ?? 'closed');
      for (const pending of this.stalled) pending.fail(refused);
      this.stalled = [];
      await this.journal.sync();
      if (this.commitFailure !== null) throw this.commitFailure;
      // Everything is folded: an erasure's names leave the journal now rather than at the next start.
      if (this.wipeAfterSeq !== null && this.journal.wipe()) this.wipeAfterSeq = null;
      this.saveToday();
      this.saveHistoryAtClose();
      this.takeObserved();
      this.db.transaction(() => this.writeObserved(this.lastNowMs))();
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (error) {
      failure = error;
    } finally {
      await this.worker?.terminate();
      this.worker = null;
      this.view.close();
      this.db.close();
      await this.journal.close();
    }
    if (failure !== null)
      throw new StoreUnavailableError(`the final save failed: ${(failure as Error).message}`, { cause: failure });
  }

  /** Completed minutes, and the running ones as far as they go: a restart merges the rest of the minute in. */
  private saveHistoryAtClose(): void {
    const nowMs = this.lastNowMs;
    this.advanceHistory(nowMs);
    const minutes = [...this.unsavedMinutes, ...this.history.takeCompleted(), ...this.history.running(nowMs)];
    this.db.transaction(() => {
      for (const { key, minute } of minutes) this.saveMinute(key, minute);
    })();
    this.unsavedMinutes = [];
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('closed');
  }
}

/** Databases from before the opt-out have no `hidden` column: added once, on open (everyone visible). */
function addHiddenColumn(db: Database.Database): void {
  const columns = db.prepare<[], { name: string }>('PRAGMA table_info(identities)').all();
  if (!columns.some((column) => column.name === 'hidden'))
    db.exec('ALTER TABLE identities ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0');
}

/** Data written before day_sketches existed kept each sketch in its daily_activity row: moved once, on open. */
function moveSketches(db: Database.Database): void {
  const columns = db.prepare<[], { name: string }>('PRAGMA table_info(daily_activity)').all();
  if (!columns.some((column) => column.name === 'sketch')) return;
  db.transaction(() => {
    db.exec(
      'INSERT OR REPLACE INTO day_sketches (day, sketch) ' +
        'SELECT day, sketch FROM daily_activity WHERE sketch IS NOT NULL; ' +
        'ALTER TABLE daily_activity DROP COLUMN sketch',
    );
  })();
}

/**
 * Only the service's user may read the data (mode 0600, whatever the umask): with the identity secret, the pseudonyms
 * of address-only clients can be reversed. Done before the first statement, as SQLite gives the -wal and -shm files it
 * creates the database file's mode; ones left by an older version are tightened too.
 */
function restrictToOwner(path: string): void {
  for (const file of [path, `${path}-wal`, `${path}-shm`, journalPath(path)])
    if (existsSync(file)) chmodSync(file, 0o600);
}

/**
 * A database file of zero bytes is not a new database but a lost one (truncated, or a failed copy): SQLite would
 * silently start it empty, and every count again from zero. A new data directory has no file at all.
 */
function refuseEmpty(path: string): void {
  if (statSync(path, { throwIfNoEntry: false })?.size !== 0) return;
  throw new DataDirError(
    `${path} is empty (0 bytes), so every count would start again from zero: restore it from a backup ` +
      '(docs/operations.md), or remove it to start counting afresh',
  );
}

/** The data was pseudonymised under one secret: refuses another (a lost, replaced or overridden key). */
function checkSecret(db: Database.Database, path: string, fingerprint: string): void {
  db.prepare<[string]>("INSERT OR IGNORE INTO meta (key, value) VALUES ('secret', ?)").run(fingerprint);
  const stored = db.prepare<[], string>("SELECT value FROM meta WHERE key = 'secret'").pluck().get();
  if (stored === fingerprint) return;
  throw new ConfigError(
    flagOf('identitySecret'),
    `${path} was written under a different identity secret, so every known user would count again as new. ` +
      'Restore the secret it was written with (the identity-secret file of the data directory, or the same ' +
      `${flagOf('identitySecretFile')} or ${flagOf('identitySecret')}), or start with an empty ` +
      `${flagOf('dataDir')} to begin counting afresh`,
  );
}

/** The journal of the database at `path`: beside it in the data directory. */
export function journalPath(path: string): string {
  return `${path}${JOURNAL_SUFFIX}`;
}

function indexAdd(index: Map<number, Set<Unfolded>>, ms: number, entry: Unfolded): void {
  const minute = Math.floor(ms / MINUTE_MS);
  let entries = index.get(minute);
  if (entries === undefined) {
    entries = new Set();
    index.set(minute, entries);
  }
  entries.add(entry);
}

function indexDelete(index: Map<number, Set<Unfolded>>, ms: number, entry: Unfolded): void {
  const minute = Math.floor(ms / MINUTE_MS);
  const entries = index.get(minute);
  if (entries === undefined) return;
  entries.delete(entry);
  if (entries.size === 0) index.delete(minute);
}

/** At most the bytes a batch's group takes in the journal. */
function batchBytes(batch: readonly Pending[]): number {
  let bytes = 128;
  for (const pending of batch)
    if (pending.kind === 'beats')
      for (const beat of pending.beats)
        bytes += 16 + beat.identity.length + (beat.channel === null ? 0 : Buffer.byteLength(beat.channel));
    else if (pending.kind === 'leaves' || pending.kind === 'erase')
      for (const identity of pending.identities) bytes += 16 + identity.length;
  return bytes;
}

/** What goes to the journal: heartbeats, leaves and erasures. */
function journaled(pending: Pending): pending is Extract<Pending, { kind: 'beats' | 'leaves' | 'erase' }> {
  return pending.kind === 'beats' || pending.kind === 'leaves' || pending.kind === 'erase';
}
