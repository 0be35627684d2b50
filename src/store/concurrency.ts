// Online counts over time: each minute's exact highest, lowest and time-weighted mean count, per channel and in total.
//
// The online count is a step function: it rises when a heartbeat brings an identity online, and falls when one
// leaves or its last heartbeat grows older than the timeout. The store reports every step at its exact instant
// (expiries too, at last heartbeat + timeout, in order), so nothing here is sampled.

import type { Calendar } from '../calendar.js';
import type { ConcurrencyPeak, ConcurrencyQuery } from './store.js';

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
/** The series and peak key of the total (every identity online); channel names are never empty. */
export const TOTAL = '';

/** One minute of one series. */
export interface MinuteFigures {
  startMs: number;
  /** The highest count during the minute, and the first instant it was reached. */
  max: number;
  maxAtMs: number;
  min: number;
  /** Time-weighted over the part of the minute the service was running. */
  mean: number;
}

export const floorTo = (ms: number, unitMs: number): number => Math.floor(ms / unitMs) * unitMs;

interface Running {
  startMs: number;
  /** From when the minute is known: its start, or the instant the service started counting. */
  observedFromMs: number;
  count: number;
  max: number;
  maxAtMs: number;
  min: number;
  /** The integral of the count over time so far, in identity-milliseconds. */
  areaMs: number;
  lastMs: number;
}

const running = (startMs: number, fromMs: number, count: number): Running => ({
  startMs,
  observedFromMs: fromMs,
  count,
  max: count,
  maxAtMs: fromMs,
  min: count,
  areaMs: 0,
  lastMs: fromMs,
});

function figures(minute: Running, untilMs: number): MinuteFigures {
  const area = minute.areaMs + minute.count * (untilMs - minute.lastMs);
  const span = untilMs - minute.observedFromMs;
  return {
    startMs: minute.startMs,
    max: minute.max,
    maxAtMs: minute.maxAtMs,
    min: minute.min,
    mean: span > 0 ? area / span : minute.count,
  };
}

/**
 * The running minute of every series with anyone online in it, and the all-time peaks. Completed minutes are handed
 * over by takeCompleted() for the store to save; a series whose count stays 0 for a whole minute is dropped (no
 * minute saved means nobody online).
 */
export class ConcurrencyTracker {
  private readonly minutes = new Map<string, Running>();
  private completed: { key: string; minute: MinuteFigures }[] = [];
  private readonly allTime = new Map<string, ConcurrencyPeak>();

  /** The counts at start (rebuilt from the store): the running minute is known from `nowMs` on. */
  start(key: string, nowMs: number, count: number): void {
    if (count > 0) this.minutes.set(key, running(floorTo(nowMs, MINUTE_MS), nowMs, count));
  }

  /** An all-time peak as saved. */
  loadPeak(key: string, peak: ConcurrencyPeak): void {
    this.allTime.set(key, { ...peak });
  }

  /** The count of `key` became `count` at `atMs` (never earlier than the last change reported). */
  change(key: string, atMs: number, count: number): void {
    let minute = this.minutes.get(key);
    if (minute !== undefined) minute = this.roll(key, minute, atMs);
    if (minute === undefined) {
      if (count === 0) return;
      // Nobody was online on it before: the minute so far was 0.
      minute = running(floorTo(atMs, MINUTE_MS), floorTo(atMs, MINUTE_MS), 0);
      this.minutes.set(key, minute);
    }
    const at = Math.max(atMs, minute.lastMs);
    minute.areaMs += minute.count * (at - minute.lastMs);
    minute.lastMs = at;
    minute.count = count;
    if (count > minute.max) {
      minute.max = count;
      minute.maxAtMs = at;
    }
    // A count held for no time at all (the one before a change at the minute's first instant) is not its lowest.
    if (at === minute.startMs) minute.min = count;
    else if (count < minute.min) minute.min = count;
    // Updated in place: with every heartbeat a new identity, the count rises on nearly every change.
    const peak = this.allTime.get(key);
    if (peak === undefined) this.allTime.set(key, { online: count, atMs: at });
    else if (count > peak.online) {
      peak.online = count;
      peak.atMs = at;
    }
  }

  /** Completes every minute that ended by `nowMs`. */
  advance(nowMs: number): void {
    for (const [key, minute] of this.minutes) this.roll(key, minute, nowMs);
  }

  /** The running minute of `key` as of `nowMs`, or null when nobody is online on it. */
  current(key: string, nowMs: number): MinuteFigures | null {
    let minute = this.minutes.get(key);
    if (minute !== undefined) minute = this.roll(key, minute, nowMs);
    return minute === undefined ? null : figures(minute, Math.max(nowMs, minute.lastMs));
  }

  /** Every running minute as of `nowMs` (after advance(nowMs)). */
  running(nowMs: number): { key: string; minute: MinuteFigures }[] {
    return [...this.minutes].map(([key, minute]) => ({ key, minute: figures(minute, Math.max(nowMs, minute.lastMs)) }));
  }

  /** Whether minutes completed that takeCompleted() has not handed over yet. */
  hasCompleted(): boolean {
    return this.completed.length > 0;
  }

  /** The count of the running minute now (0 when not tracked). */
  count(key: string): number {
    return this.minutes.get(key)?.count ?? 0;
  }

  /** Every series' all-time peak (copies). */
  allTimePeaks(): Map<string, ConcurrencyPeak> {
    const peaks = new Map<string, ConcurrencyPeak>();
    for (const [key, peak] of this.allTime) peaks.set(key, { online: peak.online, atMs: peak.atMs });
    return peaks;
  }

  allTimePeak(key: string): ConcurrencyPeak {
    const peak = this.allTime.get(key);
    return peak === undefined ? { online: 0, atMs: null } : { online: peak.online, atMs: peak.atMs };
  }

  /** Minutes completed since the last call, oldest first per series. */
  takeCompleted(): { key: string; minute: MinuteFigures }[] {
    const completed = this.completed;
    this.completed = [];
    return completed;
  }

  /** Closes the minutes of `minute`'s series that ended by `atMs`; the series' running minute after, if any. */
  private roll(key: string, minute: Running, atMs: number): Running | undefined {
    let current = minute;
    while (atMs >= current.startMs + MINUTE_MS) {
      const endMs = current.startMs + MINUTE_MS;
      this.completed.push({ key, minute: figures(current, endMs) });
      if (current.count === 0) {
        this.minutes.delete(key);
        return undefined;
      }
      current = running(endMs, endMs, current.count);
      this.minutes.set(key, current);
    }
    return current;
  }
}

/**
 * An hour of minutes as stored: 60 slots of 16 bytes (highest u32, lowest u32, mean f32, the highest's offset in the
 * minute in ms u16, 1 when recorded u16), so a series costs 960 bytes an hour while its minutes are kept.
 */
const SLOT_BYTES = 16;
export const HOUR_BLOB_BYTES = 60 * SLOT_BYTES;

export function writeMinute(blob: Buffer, minute: MinuteFigures): void {
  const at = ((minute.startMs % HOUR_MS) / MINUTE_MS) * SLOT_BYTES;
  blob.writeUInt32LE(minute.max, at);
  blob.writeUInt32LE(minute.min, at + 4);
  blob.writeFloatLE(minute.mean, at + 8);
  blob.writeUInt16LE(minute.maxAtMs - minute.startMs, at + 12);
  blob.writeUInt16LE(1, at + 14);
}

/** Writes a minute into its slot, merged with what the slot holds (a part of the same minute saved before). */
export function mergeMinute(blob: Buffer, minute: MinuteFigures): void {
  const at = ((minute.startMs % HOUR_MS) / MINUTE_MS) * SLOT_BYTES;
  const saved =
    blob.readUInt16LE(at + 14) === 1
      ? {
          startMs: minute.startMs,
          max: blob.readUInt32LE(at),
          min: blob.readUInt32LE(at + 4),
          mean: blob.readFloatLE(at + 8),
          maxAtMs: minute.startMs + blob.readUInt16LE(at + 12),
        }
      : undefined;
  writeMinute(blob, merged(saved, minute));
}

/**
 * The highest count each series reached in one commit, found before it is committed (from the counts as they were
 * and each heartbeat or leave of the batch), so that a peak is saved in the same commit as the heartbeat that made it.
 */
export class BatchPeaks {
  private readonly counts = new Map<string, number>();
  readonly highs = new Map<string, { online: number; atMs: number }>();

  /** `key`'s count changes by `delta` at `atMs`; `before` gives the count before this batch. */
  step(key: string, delta: 1 | -1, atMs: number, before: () => number): void {
    const count = (this.counts.get(key) ?? before()) + delta;
    this.counts.set(key, count);
    const high = this.highs.get(key);
    if (delta < 0) return;
    if (high === undefined) this.highs.set(key, { online: count, atMs });
    else if (count > high.online) {
      high.online = count;
      high.atMs = atMs;
    }
  }
}

/** Calls `each` with every recorded minute of an hour starting at `hourMs`, without making an object of it. */
export function forEachMinute(
  blob: Buffer,
  hourMs: number,
  each: (startMs: number, max: number, min: number, mean: number, maxAtMs: number) => void,
): void {
  for (let slot = 0; slot < 60; slot++) {
    const at = slot * SLOT_BYTES;
    if (blob.readUInt16LE(at + 14) !== 1) continue;
    const startMs = hourMs + slot * MINUTE_MS;
    each(
      startMs,
      blob.readUInt32LE(at),
      blob.readUInt32LE(at + 4),
      blob.readFloatLE(at + 8),
      startMs + blob.readUInt16LE(at + 12),
    );
  }
}

/** The recorded minutes of an hour starting at `hourMs`. */
export function readMinutes(blob: Buffer, hourMs: number): MinuteFigures[] {
  const minutes: MinuteFigures[] = [];
  forEachMinute(blob, hourMs, (startMs, max, min, mean, maxAtMs) => minutes.push({ startMs, max, min, mean, maxAtMs }));
  return minutes;
}

/** What an hour's row keeps of its minutes once they are dropped. */
export interface HourSummary {
  max: number;
  maxAtMs: number;
  min: number;
  /** Sum of the recorded minutes' means; a minute not recorded had nobody online. */
  meanSum: number;
  recorded: number;
}

export function summarise(minutes: readonly MinuteFigures[]): HourSummary {
  let max = 0;
  let maxAtMs = minutes[0]?.startMs ?? 0;
  let min = Infinity;
  let meanSum = 0;
  for (const minute of minutes) {
    if (minute.max > max) {
      max = minute.max;
      maxAtMs = minute.maxAtMs;
    }
    min = Math.min(min, minute.min);
    meanSum += minute.mean;
  }
  return { max, maxAtMs, min: minutes.length === 0 ? 0 : min, meanSum, recorded: minutes.length };
}

/** The summary of an hour's slots, read in place (summarise(readMinutes()) without an object per minute). */
export function summariseSlots(blob: Buffer, hourMs: number): HourSummary {
  let max = 0;
  let maxAtMs = -1;
  let min = Infinity;
  let meanSum = 0;
  let recorded = 0;
  for (let slot = 0; slot < 60; slot++) {
    const at = slot * SLOT_BYTES;
    if (blob.readUInt16LE(at + 14) !== 1) continue;
    const startMs = hourMs + slot * MINUTE_MS;
    if (maxAtMs < 0) maxAtMs = startMs;
    const slotMax = blob.readUInt32LE(at);
    if (slotMax > max) {
      max = slotMax;
      maxAtMs = startMs + blob.readUInt16LE(at + 12);
    }
    min = Math.min(min, blob.readUInt32LE(at + 4));
    meanSum += blob.readFloatLE(at + 8);
    recorded++;
  }
  return { max, maxAtMs: maxAtMs < 0 ? 0 : maxAtMs, min: recorded === 0 ? 0 : min, meanSum, recorded };
}

/** An hour of one series as a store keeps it: its minutes' slots while they are kept (null after), and its summary. */
export interface HourRow {
  hourMs: number;
  summary: HourSummary;
  minutes: Buffer | null;
}

/**
 * A saved minute and a later account of the same minute, as one: the highest of both (a part saved when a batch
 * raised the minute's highest count, or before a restart), the lowest and mean of the later one, which has seen more
 * of the minute (after a restart: from the restart on).
 */
function merged(saved: MinuteFigures | undefined, later: MinuteFigures): MinuteFigures {
  if (saved === undefined) return later;
  const max = saved.max >= later.max ? saved : later;
  return { ...later, max: max.max, maxAtMs: max.maxAtMs };
}

/** The saved minutes of one series, with the ones not saved yet (oldest first, the running one last) merged in. */
function minutesOf(rows: readonly HourRow[], recent: readonly MinuteFigures[]): Map<number, MinuteFigures> {
  const minutes = new Map<number, MinuteFigures>();
  for (const row of rows)
    if (row.minutes !== null)
      for (const minute of readMinutes(row.minutes, row.hourMs)) minutes.set(minute.startMs, minute);
  for (const minute of recent) minutes.set(minute.startMs, merged(minutes.get(minute.startMs), minute));
  return minutes;
}

/** Minutes of an hour that have begun by `nowMs` (the running one included). */
const elapsedMinutes = (hourMs: number, nowMs: number): number =>
  Math.max(0, Math.min(60, Math.floor((nowMs - hourMs) / MINUTE_MS) + 1));

export interface Bucket {
  startMs: number;
  endMs: number;
}

/**
 * The points of a query from a series' hour rows (those overlapping the range, oldest first) and its minutes not
 * saved yet (the running one last).
 * `buckets` of an hour or a day are made of whole hours; a minute or hour nobody was online in counts 0.
 */
export function pointsOf(
  rows: readonly HourRow[],
  recent: readonly MinuteFigures[],
  interval: 'minute' | 'hour' | 'day',
  buckets: readonly Bucket[],
  nowMs: number,
): { startMs: number; max: number; min: number; mean: number }[] {
  if (interval === 'minute') return minutePoints(rows, recent, buckets);
  const minutes = minutesOf(rows, recent);
  const hours = new Map<number, HourSummary>();
  for (const row of rows) hours.set(row.hourMs, row.summary);
  // Hours whose minutes are kept are summed again from them, so the running minute counts once, as it is now.
  const byHour = new Map<number, MinuteFigures[]>();
  for (const minute of minutes.values()) {
    const hourMs = floorTo(minute.startMs, HOUR_MS);
    const list = byHour.get(hourMs) ?? [];
    list.push(minute);
    byHour.set(hourMs, list);
  }
  for (const [hourMs, list] of byHour) hours.set(hourMs, summarise(list));
  return buckets.map(({ startMs, endMs }) => {
    let max = 0;
    let min = Infinity;
    let meanSum = 0;
    let recorded = 0;
    let elapsed = 0;
    const lastMs = Math.ceil(endMs / HOUR_MS) * HOUR_MS;
    for (let hourMs = Math.ceil(startMs / HOUR_MS) * HOUR_MS; hourMs < lastMs && hourMs <= nowMs; hourMs += HOUR_MS) {
      elapsed += elapsedMinutes(hourMs, nowMs);
      const hour = hours.get(hourMs);
      if (hour === undefined) continue;
      max = Math.max(max, hour.max);
      min = Math.min(min, hour.min);
      meanSum += hour.meanSum;
      recorded += hour.recorded;
    }
    return {
      startMs,
      max,
      min: recorded < elapsed || recorded === 0 ? 0 : min,
      mean: elapsed === 0 ? 0 : meanSum / elapsed,
    };
  });
}

/** Minute points straight from the slots (24 hours are 1,441 points: no object per saved minute on the way). */
function minutePoints(
  rows: readonly HourRow[],
  recent: readonly MinuteFigures[],
  buckets: readonly Bucket[],
): { startMs: number; max: number; min: number; mean: number }[] {
  const firstMs = buckets[0]?.startMs ?? 0;
  const points = buckets.map(({ startMs }) => ({ startMs, max: 0, min: 0, mean: 0 }));
  const pointAt = (startMs: number) => points[(startMs - firstMs) / MINUTE_MS];
  for (const row of rows)
    if (row.minutes !== null)
      forEachMinute(row.minutes, row.hourMs, (startMs, max, min, mean) => {
        const point = pointAt(startMs);
        if (point === undefined) return;
        point.max = max;
        point.min = min;
        point.mean = mean;
      });
  // As merged(): the highest of both, the lowest and mean of the later account.
  for (const minute of recent) {
    const point = pointAt(minute.startMs);
    if (point === undefined) continue;
    point.max = Math.max(point.max, minute.max);
    point.min = minute.min;
    point.mean = minute.mean;
  }
  return points;
}

/** The highest count from `sinceMs` on (minutes where kept, else hours), first instant first. */
export function peakOf(
  rows: readonly HourRow[],
  recent: readonly MinuteFigures[],
  sinceMs: number,
): { online: number; atMs: number | null } {
  let online = 0;
  let atMs: number | null = null;
  const consider = (max: number, at: number) => {
    if (max > online || (max === online && max > 0 && atMs !== null && at < atMs)) {
      online = max;
      atMs = at;
    }
  };
  const fromMinute = floorTo(sinceMs, MINUTE_MS);
  // A saved minute and a later account of it merge to the higher of the two, so each can be looked at alone. An hour
  // wholly in the range is its summary (its first highest minute); only the hour the range starts in is read minute
  // by minute, and only while its minutes are kept.
  for (const row of rows) {
    if (row.hourMs >= fromMinute || row.minutes === null) {
      if (row.hourMs >= floorTo(sinceMs, HOUR_MS)) consider(row.summary.max, row.summary.maxAtMs);
    } else if (row.summary.max >= online)
      forEachMinute(row.minutes, row.hourMs, (startMs, max, _min, _mean, maxAtMs) => {
        if (startMs >= fromMinute) consider(max, maxAtMs);
      });
  }
  for (const minute of recent) if (minute.startMs >= fromMinute) consider(minute.max, minute.maxAtMs);
  return { online, atMs };
}

/**
 * The intervals of a query: minutes and hours in UTC; days of the calendar (its time zone), each made of the hours
 * that begin in it (in a zone whose offset is not whole hours, a day's edges are the hours after its midnights). Only
 * intervals that have begun by `nowMs`.
 */
export function bucketsOf(query: ConcurrencyQuery, nowMs: number, calendar: Calendar): Bucket[] {
  const buckets: Bucket[] = [];
  const untilMs = Math.min(query.toMs, nowMs + 1);
  if (query.interval === 'day') {
    for (let day = calendar.dayOf(query.fromMs); day.startMs < untilMs; day = calendar.dayOf(day.endMs)) {
      buckets.push({ startMs: day.startMs, endMs: day.endMs });
    }
    return buckets;
  }
  const unitMs = query.interval === 'minute' ? MINUTE_MS : HOUR_MS;
  for (let startMs = floorTo(query.fromMs, unitMs); startMs < untilMs; startMs += unitMs)
    buckets.push({ startMs, endMs: startMs + unitMs });
  return buckets;
}
