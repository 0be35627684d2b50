// The embedded default store: SQLite (WAL) for durability, in-memory indexes for O(1)/O(days) counts.
// One job (the Store contract on SQLite); its indexes, sketch and batcher are in their own files.
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { TurnBatcher } from '../batcher.js';
import { shiftDay } from '../calendar.js';
import { flagOf } from '../config.js';
import { ConfigError, DataDirError, StoreUnavailableError } from '../errors.js';
import { ActivityIndex } from './activity-index.js';
import { LRUCache } from 'lru-cache';
import { HLL_REGISTERS, hllAdd, hllCount, hllMergeInto } from './hll.js';
import {
  BatchPeaks,
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
  summariseSlots,
  type HourRow,
  type MinuteFigures,
} from './concurrency.js';
import { ChannelIndex, OnlineIndex } from './online-index.js';
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
  | { kind: 'settle'; nowMs: number; done: () => void; fail: (error: Error) => void }
  | { kind: 'work'; run: () => void; nowMs: number; done: () => void; fail: (error: Error) => void };

// What a committed batch changes in memory, applied only after the commit succeeded.
type Effect =
  | { kind: 'beat'; identity: string; oldMs: number | null; nowMs: number; channel: string | null }
  | { kind: 'leave'; identity: string; nowMs: number };

/** What one commit has seen so far: who it brought online or took offline, and each series' highest count. */
interface FlushContext {
  written: Map<string, number>;
  effects: Effect[];
  peaks: BatchPeaks;
  /** Online or not after this batch so far, by identity and by channel + '\n' + identity. */
  online: Map<string, boolean>;
}

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
/** A day without a saved sketch (no activity). */
const NO_SKETCH = 0;

/**
 * Writes are queued and committed together once per turn of the event loop (group commit): every
 * heartbeat that arrived meanwhile shares one transaction and one fsync, and each is acknowledged
 * only after that commit. Counts come from in-memory indexes rebuilt from the database at start.
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  private readonly db: Database.Database;
  private readonly online: OnlineIndex;
  private readonly channels: ChannelIndex;
  private readonly activity: ActivityIndex;
  private readonly writes = new TurnBatcher<Pending>((batch) => this.flush(batch));
  private closed = false;
  /** Latest time seen: times are made monotonic so the online index stays ordered. */
  private lastNowMs = -Infinity;
  private lastHousekeepingMs = -Infinity;
  /** Why the last commit failed (a full disk, an I/O error), until one succeeds again: readiness reports it. */
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
  private readonly history = new ConcurrencyTracker();
  /** Minutes completed but not saved yet (a failed commit keeps them for the next). */
  private unsavedMinutes: { key: string; minute: MinuteFigures }[] = [];
  /** The newest hour's minute slots of each series as saved, so a commit that raises a minute reads no row. */
  private readonly hourBlobs = new Map<string, { hourMs: number; blob: Buffer }>();
  private lastHistoryPruneMs = -Infinity;
  readonly outbox: SqliteOutbox;
  private observer: CountObserver | null = null;
  /** What the observer raised that is not saved yet: saved before the heartbeats that raised it are acknowledged. */
  private observed: { entries: OutboxEntry[]; state: string | null } = { entries: [], state: null };
  /** Called after each commit with its size and duration (metrics). */
  onCommit: ((heartbeats: number, durationMs: number) => void) | null = null;

  private constructor(
    db: Database.Database,
    private readonly options: StoreOptions,
    nowMs: number,
  ) {
    this.db = db;
    this.online = new OnlineIndex(options.heartbeatTimeoutMs);
    this.channels = new ChannelIndex(options.heartbeatTimeoutMs, options.maxChannels);
    this.activity = new ActivityIndex(options.maxDays);
    this.statements = {
      lastSeen: db.prepare<[Buffer], { last_seen_ms: number }>('SELECT last_seen_ms FROM identities WHERE id = ?'),
      upsertIdentity: db.prepare<[Buffer, number, number]>(
        'INSERT INTO identities (id, first_seen_ms, last_seen_ms) VALUES (?, ?, ?) ' +
          'ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms, left_ms = NULL',
      ),
      upsertPresence: db.prepare<[Buffer, string, number]>(
        'INSERT INTO channel_presence (id, channel, last_seen_ms) VALUES (?, ?, ?) ' +
          'ON CONFLICT (id, channel) DO UPDATE SET last_seen_ms = excluded.last_seen_ms',
      ),
      leave: db.prepare<[number, Buffer]>('UPDATE identities SET left_ms = ? WHERE id = ?'),
      leaveChannels: db.prepare<[Buffer]>('DELETE FROM channel_presence WHERE id = ?'),
      pruneChannels: db.prepare<[number]>('DELETE FROM channel_presence WHERE last_seen_ms < ?'),
      countSeenBetween: db
        .prepare<[number, number], number>(
          'SELECT COUNT(*) FROM identities WHERE last_seen_ms >= ? AND last_seen_ms < ?',
        )
        .pluck(),
      addDay: db.prepare<[string, number, number]>(
        'INSERT INTO daily_activity (day, active, new) VALUES (?, ?, ?) ' +
          'ON CONFLICT (day) DO UPDATE SET active = active + excluded.active, new = new + excluded.new',
      ),
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
      probe: db.prepare<[number]>("INSERT OR REPLACE INTO meta (key, value) VALUES ('write-probe', zeroblob(?))"),
      unprobe: db.prepare("DELETE FROM meta WHERE key = 'write-probe'"),
    };
    this.outbox = new SqliteOutbox(
      db,
      options.outboxMax ?? DEFAULT_OUTBOX_MAX,
      (run) => new Promise((done, fail) => this.enqueue({ kind: 'work', run, nowMs: -Infinity, done, fail })),
    );
    this.rebuild(nowMs);
    this.startHistory(nowMs);
  }

  /**
   * The history goes on from the counts rebuilt from the database (no false dip after a restart), with the all-time
   * peaks as saved; from now on every change of a count is reported by the indexes at its instant.
   */
  private startHistory(nowMs: number): void {
    const peaks = this.db.prepare<[], { channel: string; online: number; at_ms: number }>(
      'SELECT channel, online, at_ms FROM concurrency_peaks',
    );
    for (const row of peaks.iterate()) this.history.loadPeak(row.channel, { online: row.online, atMs: row.at_ms });
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
   * Opens (creating if need be) the database at `path` and rebuilds the in-memory indexes.
   * `secretFingerprint`: of the identity secret in use. The first open records it; a later open
   * under another secret is refused (ConfigError), since every known user would count again as new.
   */
  static open(path: string, options: StoreOptions, nowMs: number, files: SqliteFileOptions = {}): SqliteStore {
    let db: Database.Database;
    try {
      if (path !== ':memory:') {
        mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
        refuseEmpty(path);
      }
      db = new Database(path);
    } catch (error) {
      throw DataDirError.from(path, error);
    }
    try {
      if (path !== ':memory:') restrictToOwner(path);
      // FULL: the WAL is fsynced at every commit, so an acknowledged heartbeat survives power loss too.
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      // Negative: in KiB rather than pages.
      if (files.cacheBytes !== undefined) db.pragma(`cache_size = -${Math.ceil(files.cacheBytes / 1024)}`);
      db.exec(SCHEMA);
      moveSketches(db);
      if (files.maxDatabaseBytes !== undefined && files.maxDatabaseBytes !== null) {
        const pageBytes = db.pragma('page_size', { simple: true }) as number;
        // Past it SQLite answers SQLITE_FULL, as a full disk does; it never goes below the current size.
        db.pragma(`max_page_count = ${Math.max(1, Math.floor(files.maxDatabaseBytes / pageBytes))}`);
      }
      if (files.secretFingerprint !== undefined) checkSecret(db, path, files.secretFingerprint);
      return new SqliteStore(db, options, nowMs);
    } catch (error) {
      db.close();
      throw DataDirError.from(path, error);
    }
  }

  private rebuild(nowMs: number): void {
    this.lastNowMs = nowMs;
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

  private enqueue(pending: Pending): void {
    if (this.closed) {
      pending.fail(new StoreUnavailableError('closed'));
      return;
    }
    this.writes.add(pending);
  }

  /** Commits everything queued in one transaction, then updates memory and acknowledges. */
  private flush(batch: readonly Pending[]): void {
    const startedMs = performance.now();
    const context: FlushContext = { written: new Map(), effects: [], peaks: new BatchPeaks(), online: new Map() };
    const { effects } = context;
    const outcomes: RecordOutcome[] = [];
    let heartbeats = 0;
    let minutes: { key: string; minute: MinuteFigures }[] = [];
    try {
      this.db.transaction(() => {
        for (const pending of batch) {
          const nowMs = Math.max(pending.nowMs, this.lastNowMs);
          if (pending.kind === 'beats') {
            outcomes.push(this.writeBeats(pending.beats, nowMs, context));
            heartbeats += pending.beats.length;
          } else if (pending.kind === 'leaves') this.writeLeaves(pending.identities, nowMs, context);
          else if (pending.kind === 'work') pending.run();
          else this.advanceHistory(nowMs);
        }
        this.writeObserved(this.lastNowMs);
        const latestMs = Math.max(this.lastNowMs, ...batch.map((p) => p.nowMs));
        this.housekeeping(latestMs);
        minutes = [...this.unsavedMinutes, ...this.history.takeCompleted()];
        this.writeHistory(context.peaks, minutes, latestMs);
      })();
      this.unsavedMinutes = [];
      this.savedObserved();
    } catch (error) {
      // The cached hours took this commit's minutes, which were rolled back.
      this.hourBlobs.clear();
      // Kept for the next commit, but not without bound while commits fail (a full disk): the newest are kept.
      this.unsavedMinutes = minutes.slice(-MAX_UNSAVED_MINUTES);
      if (this.today) this.today.dirty = true;
      this.commitFailure = error as Error;
      const failure = new StoreUnavailableError((error as Error).message, { cause: error });
      for (const pending of batch) pending.fail(failure);
      return;
    }
    if (this.commitFailure) this.recovered();
    this.apply(effects);
    // Events the batch raised are durable before its heartbeats are acknowledged; a state alone waits for the next
    // commit (restore() reconciles whatever a crash lost of it).
    if (this.takeObserved() && this.observed.entries.length > 0) {
      try {
        this.db.transaction(() => this.writeObserved(this.lastNowMs))();
        this.savedObserved();
      } catch {
        // Kept for the next commit (the disk is full: readiness says so already).
      }
    }
    this.onCommit?.(heartbeats, performance.now() - startedMs);
    let outcome = 0;
    for (const pending of batch) {
      if (pending.kind === 'beats') pending.done(outcomes[outcome++] as RecordOutcome);
      else pending.done();
    }
  }

  private writeLeaves(identities: readonly string[], nowMs: number, context: FlushContext): void {
    for (const identity of identities) {
      const blob = toBlob(identity);
      this.statements.leave.run(nowMs, blob);
      this.statements.leaveChannels.run(blob);
      context.effects.push({ kind: 'leave', identity, nowMs });
      if (context.online.get(identity) ?? this.online.lastSeen(identity, nowMs) !== undefined)
        context.peaks.step(TOTAL, -1, nowMs, () => this.online.count(nowMs));
      context.online.set(identity, false);
      for (const channel of this.channels.channelsOf(identity, nowMs)) {
        const key = `${channel}\n${identity}`;
        if (context.online.get(key) ?? true)
          context.peaks.step(channel, -1, nowMs, () => this.channels.count(channel, nowMs));
        context.online.set(key, false);
      }
    }
  }

  /** Expiries up to `nowMs` reported, and the minutes that ended by then completed (in memory). */
  private advanceHistory(nowMs: number): void {
    this.online.expire(nowMs);
    this.channels.expire(nowMs);
    this.history.advance(nowMs);
    this.observer?.advance(nowMs);
  }

  /**
   * In the commit's transaction: each all-time peak the batch raised, the running minute of each series whose highest
   * count the batch raised (so that today's peak too survives a crash), and the completed minutes.
   */
  private writeHistory(
    peaks: BatchPeaks,
    minutes: readonly { key: string; minute: MinuteFigures }[],
    nowMs: number,
  ): void {
    for (const [key, high] of peaks.highs) {
      if (high.online > this.history.allTimePeak(key).online) this.statements.savePeak.run(key, high.online, high.atMs);
      const running = this.history.current(key, high.atMs);
      if (running !== null && high.online <= running.max) continue;
      const startMs = floorTo(high.atMs, MINUTE_MS);
      this.saveMinute(key, {
        startMs,
        max: high.online,
        maxAtMs: high.atMs,
        // As far as the minute went before this batch (nobody online on it: 0); the completed minute replaces both.
        min: running?.startMs === startMs ? running.min : high.atMs === startMs ? high.online : 0,
        mean: running?.startMs === startMs ? running.mean : 0,
      });
    }
    for (const { key, minute } of minutes) this.saveMinute(key, minute);
    if (nowMs - this.lastHistoryPruneMs >= HOUSEKEEPING_INTERVAL_MS) {
      this.lastHistoryPruneMs = nowMs;
      this.statements.dropMinutes.run(floorTo(nowMs - this.options.historyMinuteDays * 86_400_000, HOUR_MS));
      this.statements.dropHours.run(floorTo(nowMs - this.options.maxDays * 86_400_000, HOUR_MS));
    }
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

  private writeBeats(beats: readonly HeartbeatRecord[], nowMs: number, context: FlushContext): RecordOutcome {
    const { written, effects, peaks, online } = context;
    const { key: dayKey, startMs: dayStartMs } = this.options.calendar.dayOf(nowMs);
    this.rollDay(dayKey);
    const sketch = this.today as DaySketch;
    let channelsRefused = 0;
    let active = 0;
    let fresh = 0;
    for (const { identity, channel } of beats) {
      const blob = toBlob(identity);
      const onlineSinceMs = this.online.lastSeen(identity, nowMs);
      const oldMs = written.get(identity) ?? onlineSinceMs ?? this.statements.lastSeen.get(blob)?.last_seen_ms ?? null;
      if (!(online.get(identity) ?? onlineSinceMs !== undefined)) {
        peaks.step(TOTAL, 1, nowMs, () => this.online.count(nowMs));
        online.set(identity, true);
      }
      this.statements.upsertIdentity.run(blob, nowMs, nowMs);
      written.set(identity, nowMs);
      if (oldMs === null || oldMs < dayStartMs) {
        active++;
        if (oldMs === null) fresh++;
        if (hllAdd(sketch.registers, identity)) sketch.dirty = true;
      }
      let tracked: string | null = null;
      if (channel !== null) {
        if (this.channels.canTouch(channel, nowMs)) {
          this.statements.upsertPresence.run(blob, channel, nowMs);
          tracked = channel;
          const key = `${channel}\n${identity}`;
          if (!(online.get(key) ?? this.channels.lastSeen(channel, identity, nowMs) !== undefined)) {
            peaks.step(channel, 1, nowMs, () => this.channels.count(channel, nowMs));
            online.set(key, true);
          }
        } else channelsRefused++;
      }
      effects.push({ kind: 'beat', identity, oldMs, nowMs, channel: tracked });
    }
    if (active > 0) this.statements.addDay.run(dayKey, active, fresh);
    this.lastNowMs = nowMs;
    return { channelsRefused };
  }

  /** A new day began: save the finished day's sketch and start an empty one. */
  private rollDay(dayKey: string): void {
    if (this.today?.day === dayKey) return;
    if (this.today) this.statements.saveSketch.run(this.today.day, Buffer.from(this.today.registers));
    this.today = { day: dayKey, registers: new Uint8Array(HLL_REGISTERS), dirty: false };
  }

  private housekeeping(nowMs: number): void {
    if (nowMs - this.lastHousekeepingMs < HOUSEKEEPING_INTERVAL_MS) return;
    this.lastHousekeepingMs = nowMs;
    this.statements.pruneChannels.run(nowMs - this.options.heartbeatTimeoutMs);
    this.saveToday();
  }

  private saveToday(): void {
    if (!this.today?.dirty) return;
    this.statements.saveSketch.run(this.today.day, Buffer.from(this.today.registers));
    this.today.dirty = false;
  }

  private apply(effects: readonly Effect[]): void {
    for (const effect of effects) {
      if (effect.kind === 'beat') {
        this.activity.move(effect.oldMs, effect.nowMs);
        this.online.touch(effect.identity, effect.nowMs);
        if (effect.channel !== null) this.channels.touch(effect.channel, effect.identity, effect.nowMs);
      } else {
        this.online.remove(effect.identity, effect.nowMs);
        this.channels.removeEverywhere(effect.identity, effect.nowMs);
      }
    }
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
    return (
      this.activity.countAfterMinuteOf(sinceMs) +
      this.statements.countSeenBetween.get(sinceMs, ActivityIndex.minuteEndMs(sinceMs))!
    );
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
    return days.map((day) => {
      const row = rows.get(day);
      return { day, active: row?.active ?? 0, new: row?.new ?? 0 };
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
    // The commit saves them (and what came meanwhile).
    return new Promise((done, fail) => this.enqueue({ kind: 'settle', nowMs, done, fail }));
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
      if (this.commitFailure === null) this.db.exec('BEGIN IMMEDIATE; ROLLBACK');
      else {
        this.db.transaction(() => {
          this.statements.probe.run(PROBE_BYTES);
          this.statements.unprobe.run();
        })();
        this.recovered();
      }
    } catch (error) {
      const reason = (error as Error).message;
      throw new StoreUnavailableError(this.commitFailure ? `commits fail: ${reason}` : reason, { cause: error });
    }
  }

  /**
   * Space is back: hand the WAL's room back to the disk at once (TRUNCATE), or a WAL that grew while commits failed
   * would keep the space just freed, and let in only a few heartbeats.
   */
  private recovered(): void {
    this.commitFailure = null;
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // Still short of room for the checkpoint: the commits succeed, and the next automatic checkpoint retries.
    }
  }

  /**
   * Finishes pending writes, saves today's sketch, checkpoints, closes. The database is closed whatever happens; when
   * the final save or checkpoint fails (a full disk), a StoreUnavailableError says so after closing: nothing
   * acknowledged is lost (it is committed, in the WAL, read again at the next open, and today's sketch is rebuilt).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.writes.drain();
    this.closed = true;
    let failure: unknown = null;
    try {
      this.saveToday();
      this.saveHistoryAtClose();
      this.takeObserved();
      this.db.transaction(() => this.writeObserved(this.lastNowMs))();
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (error) {
      failure = error;
    } finally {
      this.db.close();
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
  for (const file of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(file)) chmodSync(file, 0o600);
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
