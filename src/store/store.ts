// The Store contract: what the service asks of any backend, in the words of the domain.
import type { Calendar } from '../calendar.js';

/**
 * One heartbeat: an identity (a pseudonym, see identity.ts) seen now, optionally on a channel
 * (a page, room or part of an app).
 */
export interface HeartbeatRecord {
  identity: string;
  channel: string | null;
  /**
   * false: the identity opted out of presence lookups (`"presence": false`); it counts in every aggregate, but
   * `presence()` answers as if it was never seen until a heartbeat comes without the flag. Absent: true.
   */
  presence?: boolean;
}

/** What a presence lookup tells of one identity (docs/privacy.md). */
export interface PresenceRecord {
  /** Online now (on the channel asked about, if any); false while it opted out. */
  online: boolean;
  /** Its last heartbeat on any channel; null when never seen, erased, past the retention, or opted out. */
  lastSeenMs: number | null;
}

export interface RecordOutcome {
  /**
   * Heartbeats whose channel was not tracked because `maxChannels` channels were online already; they count as online
   * all the same.
   */
  channelsRefused: number;
}

export interface ChannelCount {
  channel: string;
  online: number;
}

/** One calendar day (in the configured time zone) of activity; exact figures. */
export interface DayActivity {
  /** YYYY-MM-DD in the configured time zone. */
  day: string;
  /** Distinct identities active that day. */
  active: number;
  /** Identities seen that day for the first time ever. */
  new: number;
}

/** The resolution of a concurrency series. */
export type ConcurrencyInterval = 'minute' | 'hour' | 'day';

/** One point of a concurrency series: the online count during [startMs, start of the next point). */
export interface ConcurrencyPoint {
  startMs: number;
  /** Exact highest and lowest count. */
  max: number;
  min: number;
  /** Time-weighted mean count. */
  mean: number;
}

export interface ConcurrencyQuery {
  /** null: the total. */
  channel: string | null;
  interval: ConcurrencyInterval;
  /** Points whose interval starts in [fromMs, toMs) (fromMs rounded down to the interval), none after now. */
  fromMs: number;
  toMs: number;
}

/** The highest online count and the first instant it was reached (atMs null: nobody was online). */
export interface ConcurrencyPeak {
  online: number;
  atMs: number | null;
}

/**
 * Told of every change of an online count, at its instant and in order, and of time passing (the alert rules, see
 * docs/alerts.md). What it raises the store saves in its outbox, with the state it needs to go on after a restart.
 */
export interface CountObserver {
  /** Once, before the first change: the state saved last (null: none), and the counts and all-time peaks now. */
  restore(
    saved: string | null,
    counts: ReadonlyMap<string, number>,
    peaks: ReadonlyMap<string, ConcurrencyPeak>,
    nowMs: number,
  ): void;
  /** The count of a series ('' the total, else a channel) became `count` at `atMs`. */
  change(series: string, atMs: number, count: number): void;
  /** Time reached `nowMs` with no change. */
  advance(nowMs: number): void;
  /** The outbox entries raised since the last call and the state to save with them; null when nothing changed. */
  take(): { entries: OutboxEntry[]; state: string } | null;
}

/** One event for one receiver, waiting in the outbox until it is delivered or given up. */
export interface OutboxEntry {
  /** Unique per event and receiver. */
  id: string;
  /** The event's own id (the same for every receiver, and for the same event raised twice). */
  eventId: string;
  type: string;
  /** The receiver's URL. */
  receiver: string;
  /** When the event happened. */
  atMs: number;
  /** The JSON body, as the Standard Webhooks specification has it: {"type", "timestamp", "data"}. */
  body: string;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface Delivery extends OutboxEntry {
  status: DeliveryStatus;
  attempts: number;
  /** The HTTP status of the last attempt (null: none, or no answer). */
  lastStatus: number | null;
  /** Why the last attempt failed, when it had no HTTP answer (a timeout, a refused connection). */
  lastError: string | null;
  /** When the next attempt is due (null: no more attempts). */
  nextAttemptMs: number | null;
  createdMs: number;
  /** When it was delivered or given up. */
  doneMs: number | null;
}

/** What an attempt to deliver came to. */
export interface AttemptRecord {
  delivered: boolean;
  status: number | null;
  error: string | null;
  /** When to try again; null: no more attempts (failed, unless delivered). */
  nextAttemptMs: number | null;
}

/** The durable outbox of webhook deliveries: bounded, its oldest entries dropped past the bound. */
export interface WebhookOutbox {
  /** Adds entries (an entry whose id is there already is left as it is). */
  add(entries: readonly OutboxEntry[], nowMs: number): Promise<void>;
  /** Pending deliveries due by `nowMs`, oldest first: none unless this instance leads (Store.leads). */
  due(nowMs: number, limit: number): Promise<Delivery[]>;
  /** Records an attempt at delivery `id`. */
  attempted(id: string, attempt: AttemptRecord, nowMs: number): Promise<void>;
  /** The newest deliveries with this status, newest first. */
  list(status: DeliveryStatus, limit: number): Promise<Delivery[]>;
  /** Deliveries pending, and pending ones dropped past the bound since this process started. */
  depth(): Promise<{ pending: number; dropped: number }>;
}

/** The webhook outbox's bound when a store's options give none (StoreOptions.outboxMax). */
export const DEFAULT_OUTBOX_MAX = 10_000;

export interface StoreOptions {
  /** An identity is online while its last heartbeat is at most this old (and it has not left). */
  heartbeatTimeoutMs: number;
  /** Longest look-back of countActive, in days; older activity may be forgotten by the counters. */
  maxDays: number;
  /** Most channels online at once. */
  maxChannels: number;
  calendar: Calendar;
  /** Days the per-minute series are kept; hours are kept for maxDays. */
  historyMinuteDays: number;
  /** Most deliveries the webhook outbox keeps (default 10,000): past it the oldest go, delivered ones first. */
  outboxMax?: number;
  /**
   * Days an identity is kept after its last heartbeat (--retention-days, default maxDays): past them it is deleted
   * in the background, and lookups answer as if it was never seen. Aggregates (day counts, sketches, history) stay.
   */
  retentionDays?: number;
}

/**
 * Every backend implements this; `test/store.suite.ts` is the one behaviour suite they all pass.
 * All times are UTC epoch milliseconds from the caller's injected clock, never the store's own.
 */
export interface Store {
  readonly kind: string;
  /**
   * Marks every identity online as of `nowMs` and active today; resolves only once the heartbeats
   * are durable (committed), so an acknowledged heartbeat survives a crash.
   */
  recordHeartbeats(beats: readonly HeartbeatRecord[], nowMs: number): Promise<RecordOutcome>;
  /**
   * Each identity's status, in the order asked: online (on `channel`, if given) and its last heartbeat. Answers only
   * about identities named; there is no way to list them.
   */
  presence(identities: readonly string[], channel: string | null, nowMs: number): Promise<PresenceRecord[]>;
  /**
   * Removes identities everywhere the store keeps one (last and first heartbeat, channels, the online indexes, the
   * opt-out): they stop counting as online and as active, and one that beats again is new. Aggregates stay.
   * Resolves, once durable, with how many of them were known (idempotent: again, 0).
   */
  erase(identities: readonly string[], nowMs: number): Promise<number>;
  /** Marks identities offline at once, on every channel; they stay counted as active. */
  recordLeaves(identities: readonly string[], nowMs: number): Promise<void>;
  /** Identities (on `channel`, if given) whose last heartbeat is within the timeout, exact at `nowMs`. */
  countOnline(nowMs: number, channel?: string): Promise<number>;
  /** Distinct identities whose last heartbeat is at or after `sinceMs`. */
  countActive(sinceMs: number, nowMs: number): Promise<number>;
  /** Channels by online count, largest first, at most `limit`. */
  topChannels(nowMs: number, limit: number): Promise<ChannelCount[]>;
  /** Exact daily actives and new identities for each of `days` (YYYY-MM-DD keys of the calendar). */
  dailyActivity(days: readonly string[]): Promise<DayActivity[]>;
  /**
   * Distinct identities active on any day from `firstDay` to `lastDay` (YYYY-MM-DD keys of the
   * calendar, inclusive): estimated (HyperLogLog, standard error about 0.8%).
   */
  distinctActive(firstDay: string, lastDay: string): Promise<number>;
  /**
   * The online count over time (see docs/analytics.md): each point's exact highest and lowest count and its
   * time-weighted mean. Minutes are kept for historyMinuteDays, hours for maxDays; a day is made of its hours.
   */
  concurrency(query: ConcurrencyQuery, nowMs: number): Promise<ConcurrencyPoint[]>;
  /** The highest count (of `channel`, or the total) since `sinceMs` (null: ever), exact, with its instant. */
  peak(channel: string | null, sinceMs: number | null, nowMs: number): Promise<ConcurrencyPeak>;
  /**
   * Completes the minutes that ended by `nowMs` and saves them (called every few seconds): with no heartbeat
   * coming, counts still fall as identities time out.
   */
  settle(nowMs: number): Promise<void>;
  /**
   * Whether this instance does the work a deployment does once (settling the history): always for a store of one
   * process; on Redis, only the instance holding the lease, as of its last settle.
   */
  leads(): boolean;
  /**
   * From now on tells `observer` every change of an online count, after restoring it from the state saved with the
   * outbox, and saves what it raises in the outbox: before the heartbeats that raised it are acknowledged (SQLite), or
   * with the minutes the changes settle into (Redis). On Redis only the instance that leads observes.
   */
  observe(observer: CountObserver, nowMs: number): Promise<void>;
  /** The webhook deliveries waiting, done and given up. */
  readonly outbox: WebhookOutbox;
  /** Throws unless the store is open and writable (readiness). */
  check(): Promise<void>;
  /** Finishes pending writes, then closes. */
  close(): Promise<void>;
}
