// The Store contract: what the service asks of any backend, in the words of the domain.
import type { Calendar } from '../calendar.js';

/**
 * One heartbeat: an identity (a pseudonym, see identity.ts) seen now, optionally on a channel
 * (a page, room or part of an app).
 */
export interface HeartbeatRecord {
  identity: string;
  channel: string | null;
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

export interface StoreOptions {
  /** An identity is online while its last heartbeat is at most this old (and it has not left). */
  heartbeatTimeoutMs: number;
  /** Longest look-back of countActive, in days; older activity may be forgotten by the counters. */
  maxDays: number;
  /** Most channels online at once. */
  maxChannels: number;
  calendar: Calendar;
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
  /** Throws unless the store is open and writable (readiness). */
  check(): Promise<void>;
  /** Finishes pending writes, then closes. */
  close(): Promise<void>;
}
