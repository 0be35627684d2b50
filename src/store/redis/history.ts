// The concurrency history on Redis: one elected instance settles every shard's changes into minutes, hours and peaks
// that every instance reads (docs/analytics.md, "Concurrency history on Redis").
import { randomUUID } from 'node:crypto';
import type { RedisConnection } from '../../redis/connection.js';
import type { RedisKeys } from '../../redis/keys.js';
import { LuaScript } from '../../redis/lua.js';
import {
  bucketsOf,
  ConcurrencyTracker,
  floorTo,
  HOUR_BLOB_BYTES,
  HOUR_MS,
  mergeMinute,
  peakOf,
  pointsOf,
  summariseSlots,
  TOTAL,
  type HourRow,
  type HourSummary,
  type MinuteFigures,
} from '../concurrency.js';
import type { ConcurrencyPeak, ConcurrencyPoint, ConcurrencyQuery, CountObserver, StoreOptions } from '../store.js';
import type { RedisOutbox } from './outbox.js';

const DAY_MS = 86_400_000;
/** How long the settling instance's lease lasts without renewal (it renews every second): the longest takeover. */
const LEASE_MS = 5000;

const script = (name: string) => LuaScript.load(new URL(`./${name}.lua`, import.meta.url));
const SETTLE = script('settle');
const LEAD = script('lead');

interface Change {
  atMs: number;
  delta: number;
  key: string;
}

const encodeSummary = (hourMs: number, s: HourSummary): string =>
  `${hourMs}:${s.max}:${s.maxAtMs}:${s.min}:${s.meanSum}:${s.recorded}`;

function decodeSummary(member: string): { hourMs: number; summary: HourSummary } {
  const [hourMs = 0, max = 0, maxAtMs = 0, min = 0, meanSum = 0, recorded = 0] = member.split(':').map(Number);
  return { hourMs, summary: { max, maxAtMs, min, meanSum, recorded } };
}

/** A flat [name, count, ...] reply as a map. */
function countsOf(flat: readonly unknown[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + 1 < flat.length; i += 2) counts.set(String(flat[i]), Number(flat[i + 1]));
  return counts;
}

/**
 * The shards hold the truth: each one's counts as settled and its changes since (record.lua, settle.lua), so any
 * instance can take over. The one holding the lease folds every shard's changes, merged by instant, into one
 * ConcurrencyTracker, as the SQLite store does with its own, and saves completed and running minutes, hour summaries
 * and all-time peaks under one hash tag. Every instance reads those.
 */
export class RedisHistory {
  private readonly id = randomUUID();
  private tracker: ConcurrencyTracker | null = null;
  /** Each shard's counts as this instance last settled them; a shard settled by another since is corrected. */
  private readonly shardCounts = new Map<number, Map<string, number>>();
  /** The total's and each channel's count, as of `settledMs`. */
  private readonly counts = new Map<string, number>();
  private readonly savedPeaks = new Map<string, number>();
  /** The minute blobs of the hours being written, by series and hour: only this instance writes them. */
  private readonly blobs = new Map<string, Buffer>();
  /** Settled up to (not including) this instant. */
  private settledMs = -Infinity;
  /** The hour in which each series' old minutes were last dropped. */
  private readonly trimmedHours = new Map<string, number>();
  /** Whether this instance wrote since the last settle (a read then settles again, even at the same instant). */
  private dirty = false;
  private rounds: Promise<void> = Promise.resolve();
  /** Whether this instance held the lease at its last round. */
  leading = false;
  /** Told of the changes this instance settles while it leads (restored each time it takes the lease). */
  private observer: CountObserver | null = null;

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: RedisKeys,
    private readonly options: StoreOptions,
    private readonly outbox: RedisOutbox,
  ) {}

  /** From the next round on, `observer` is told of every change this instance settles (see Store.observe). */
  async observe(observer: CountObserver, nowMs: number): Promise<void> {
    await this.rounds;
    this.observer = observer;
    // The next round starts again from the shards' counts, and restores the observer there.
    this.forget();
    await this.settle(nowMs);
  }

  touch(): void {
    this.dirty = true;
  }

  /** Settles everything up to `nowMs` (included) if this instance holds or takes the lease; one round at a time. */
  settle(nowMs: number): Promise<void> {
    const round = this.rounds.then(() => this.round(nowMs));
    this.rounds = round.catch(() => {});
    return round;
  }

  async concurrency(query: ConcurrencyQuery, nowMs: number): Promise<ConcurrencyPoint[]> {
    await this.settle(nowMs);
    const series = query.channel ?? TOTAL;
    const buckets = bucketsOf(query, nowMs, this.options.calendar);
    if (buckets.length === 0) return [];
    const fromMs = floorTo((buckets[0] as { startMs: number }).startMs, HOUR_MS);
    const toMs = (buckets[buckets.length - 1] as { endMs: number }).endMs;
    const hours: number[] = [];
    if (query.interval === 'minute') for (let hourMs = fromMs; hourMs < toMs; hourMs += HOUR_MS) hours.push(hourMs);
    const rows = await this.rows(series, fromMs, toMs, hours);
    return pointsOf(rows, [], query.interval, buckets, nowMs);
  }

  async peak(channel: string | null, sinceMs: number | null, nowMs: number): Promise<ConcurrencyPeak> {
    await this.settle(nowMs);
    const series = channel ?? TOTAL;
    if (sinceMs === null) {
      const saved = await this.redis.run((client) => client.hget(this.keys.historyPeaks(), series));
      if (saved === null) return { online: 0, atMs: null };
      const [online, atMs] = saved.split(':').map(Number) as [number, number];
      return { online, atMs };
    }
    const firstHour = floorTo(sinceMs, HOUR_MS);
    const rows = await this.rows(series, firstHour, nowMs + 1, firstHour < sinceMs ? [firstHour] : []);
    return peakOf(rows, [], sinceMs);
  }

  /** Saves the running minutes and gives the lease up, so that another instance takes over at once. */
  async close(nowMs: number): Promise<void> {
    if (this.tracker !== null && Number.isFinite(nowMs)) await this.settle(nowMs).catch(() => {});
    await this.rounds;
    this.leading = false;
    await this.redis.run((client) => LEAD.run(client, [this.keys.historyLeader()], [this.id, LEASE_MS, 0]));
  }

  /** A series' hours in [fromMs, toMs): their summaries, and the minutes of `withMinutes`. */
  private async rows(series: string, fromMs: number, toMs: number, withMinutes: number[]): Promise<HourRow[]> {
    const [members, blobs] = await this.redis.run((client) =>
      Promise.all([
        client.zrangebyscore(this.keys.historyHours(series), fromMs, `(${toMs}`),
        withMinutes.length === 0
          ? Promise.resolve([])
          : client.hmgetBuffer(this.keys.historyMinutes(series), ...withMinutes.map(String)),
      ]),
    );
    const rows = new Map<number, HourRow>();
    for (const member of members) {
      const { hourMs, summary } = decodeSummary(member);
      rows.set(hourMs, { hourMs, summary, minutes: null });
    }
    withMinutes.forEach((hourMs, i) => {
      const blob = blobs[i];
      if (blob === null || blob === undefined) return;
      const row = rows.get(hourMs);
      if (row !== undefined) row.minutes = blob;
      else rows.set(hourMs, { hourMs, summary: summariseSlots(blob, hourMs), minutes: blob });
    });
    return [...rows.values()].sort((a, b) => a.hourMs - b.hourMs);
  }

  private async round(nowMs: number): Promise<void> {
    if (this.settledMs > nowMs && !this.dirty) return;
    const leading = await this.redis.run((client) =>
      LEAD.run(client, [this.keys.historyLeader()], [this.id, LEASE_MS, 1]),
    );
    this.leading = leading === 1;
    if (!this.leading) {
      this.forget();
      return;
    }
    this.dirty = false;
    const untilMs = Math.max(nowMs + 1, this.settledMs);
    const { heartbeatTimeoutMs } = this.options;
    const replies = (await this.redis.run((client) =>
      Promise.all(
        this.keys
          .shardIndexes()
          .map((shard) =>
            SETTLE.run(
              client,
              [this.keys.seen(shard), this.keys.chans(shard), this.keys.hist(shard), this.keys.historyLog(shard)],
              [heartbeatTimeoutMs, untilMs, this.keys.channelPrefix(shard)],
            ),
          ),
      ),
    )) as unknown[][];
    const tracker = this.tracker ?? (await this.startTracker(replies, untilMs));
    const changes: Change[] = [];
    replies.forEach((reply, shard) => {
      if (reply.length < 3) return;
      const settledMs = Number(reply[0]);
      const counts = countsOf(reply[1] as unknown[]);
      // Another instance settled this shard since (a lease taken over and back), or its history started again: the
      // difference is a step at the instant its counts are from.
      const expected = this.shardCounts.get(shard) ?? new Map<string, number>();
      for (const key of new Set([...counts.keys(), ...expected.keys()])) {
        const delta = (counts.get(key) ?? 0) - (expected.get(key) ?? 0);
        if (delta !== 0) changes.push({ atMs: settledMs, delta, key });
      }
      const list = reply[2] as unknown[];
      for (let i = 0; i + 2 < list.length; i += 3) {
        const change = { atMs: Number(list[i]), delta: Number(list[i + 1]), key: String(list[i + 2]) };
        changes.push(change);
        counts.set(change.key, (counts.get(change.key) ?? 0) + change.delta);
      }
      this.shardCounts.set(shard, counts);
    });
    const touched = this.apply(tracker, changes);
    tracker.advance(nowMs);
    this.observer?.advance(nowMs);
    this.settledMs = untilMs;
    await this.save(tracker, nowMs, touched);
  }

  /** A tracker going on from the shards' counts as settled (the earliest instant of any shard's). */
  private async startTracker(replies: unknown[][], untilMs: number): Promise<ConcurrencyTracker> {
    const tracker = new ConcurrencyTracker();
    const peaks = await this.redis.run((client) => client.hgetall(this.keys.historyPeaks()));
    for (const [series, saved] of Object.entries(peaks)) {
      const [online, atMs] = saved.split(':').map(Number) as [number, number];
      tracker.loadPeak(series, { online, atMs });
      this.savedPeaks.set(series, online);
    }
    let fromMs = untilMs;
    const totals = new Map<string, number>();
    replies.forEach((reply, shard) => {
      if (reply.length < 3) return;
      fromMs = Math.min(fromMs, Number(reply[0]));
      const counts = countsOf(reply[1] as unknown[]);
      for (const [key, count] of counts) totals.set(key, (totals.get(key) ?? 0) + count);
      this.shardCounts.set(shard, counts);
    });
    for (const [key, count] of totals) {
      tracker.start(key, fromMs, count);
      this.counts.set(key, count);
    }
    if (this.observer !== null)
      this.observer.restore(await this.outbox.savedState(), new Map(this.counts), tracker.allTimePeaks(), fromMs);
    this.tracker = tracker;
    return tracker;
  }

  /** Applies the changes in the order of their instants (one step per series and instant); the series touched. */
  private apply(tracker: ConcurrencyTracker, changes: readonly Change[]): Set<string> {
    const steps = new Map<string, Change>();
    for (const change of changes) {
      const id = `${change.atMs}\u0000${change.key}`;
      const step = steps.get(id);
      if (step === undefined) steps.set(id, { ...change });
      else step.delta += change.delta;
    }
    const touched = new Set<string>();
    for (const { atMs, delta, key } of [...steps.values()].sort((a, b) => a.atMs - b.atMs)) {
      if (delta === 0) continue;
      // Never below 0: a count is a number of identities (a shard whose history started again can step down).
      const count = Math.max(0, (this.counts.get(key) ?? 0) + delta);
      this.counts.set(key, count);
      tracker.change(key, atMs, count);
      this.observer?.change(key, atMs, count);
      touched.add(key);
    }
    return touched;
  }

  /** Writes the minutes completed and the running ones, their hours' summaries, and the all-time peaks raised. */
  private async save(tracker: ConcurrencyTracker, nowMs: number, touched: Set<string>): Promise<void> {
    const minutes: { key: string; minute: MinuteFigures }[] = [...tracker.takeCompleted(), ...tracker.running(nowMs)];
    const hours = new Map<string, { series: string; hourMs: number; blob: Buffer }>();
    const missing: { id: string; series: string; hourMs: number }[] = [];
    for (const { key, minute } of minutes) {
      const hourMs = floorTo(minute.startMs, HOUR_MS);
      const id = `${hourMs}:${key}`;
      if (!this.blobs.has(id) && !missing.some((entry) => entry.id === id)) missing.push({ id, series: key, hourMs });
    }
    if (missing.length > 0) {
      const saved = await this.redis.run((client) =>
        Promise.all(
          missing.map(({ series, hourMs }) => client.hgetBuffer(this.keys.historyMinutes(series), String(hourMs))),
        ),
      );
      missing.forEach(({ id }, i) => this.blobs.set(id, saved[i] ?? Buffer.alloc(HOUR_BLOB_BYTES)));
    }
    for (const { key, minute } of minutes) {
      const hourMs = floorTo(minute.startMs, HOUR_MS);
      const id = `${hourMs}:${key}`;
      const blob = this.blobs.get(id) as Buffer;
      mergeMinute(blob, minute);
      hours.set(id, { series: key, hourMs, blob });
    }
    const { historyMinuteDays, maxDays } = this.options;
    const writes: ((client: Parameters<Parameters<RedisConnection['run']>[0]>[0]) => Promise<unknown>)[] = [];
    for (const { series, hourMs, blob } of hours.values()) {
      const hoursKey = this.keys.historyHours(series);
      const summary = encodeSummary(hourMs, summariseSlots(blob, hourMs));
      writes.push(
        (client) => client.hset(this.keys.historyMinutes(series), String(hourMs), blob),
        (client) => client.zremrangebyscore(hoursKey, hourMs, hourMs),
        (client) => client.zadd(hoursKey, hourMs, summary),
        (client) => client.zremrangebyscore(hoursKey, '-inf', `(${nowMs - maxDays * DAY_MS}`),
      );
    }
    for (const key of touched) {
      const peak = tracker.allTimePeak(key);
      if (peak.atMs !== null && peak.online > (this.savedPeaks.get(key) ?? 0)) {
        writes.push((client) => client.hset(this.keys.historyPeaks(), key, `${peak.online}:${peak.atMs}`));
        this.savedPeaks.set(key, peak.online);
      }
    }
    // Once an hour per series written, its minutes older than they are kept go (a few hundred fields to look at).
    const hourMs = floorTo(nowMs, HOUR_MS);
    const oldestMs = hourMs - historyMinuteDays * DAY_MS;
    if (this.trimmedHours.size > 4 * (this.options.maxChannels + 1)) this.trimmedHours.clear();
    for (const { series } of hours.values()) {
      if (this.trimmedHours.get(series) === hourMs) continue;
      this.trimmedHours.set(series, hourMs);
      writes.push(async (client) => {
        const key = this.keys.historyMinutes(series);
        const old = (await client.hkeys(key)).filter((field) => Number(field) < oldestMs);
        if (old.length > 0) await client.hdel(key, ...old);
      });
    }
    const observed = this.observer?.take() ?? null;
    if (writes.length > 0) await this.redis.run((client) => Promise.all(writes.map((write) => write(client))));
    // After the minutes and peaks: a receiver told of a record finds it in /analytics/peaks.
    if (observed !== null) await this.outbox.save(observed.entries, observed.state, nowMs);
    // Only the hours still being written stay in memory.
    const keepFromMs = floorTo(nowMs, HOUR_MS) - HOUR_MS;
    for (const [id, _blob] of this.blobs) if (Number(id.slice(0, id.indexOf(':'))) < keepFromMs) this.blobs.delete(id);
  }

  /** Another instance settles now: what this one knew goes stale. */
  private forget(): void {
    this.tracker = null;
    this.shardCounts.clear();
    this.counts.clear();
    this.savedPeaks.clear();
    this.blobs.clear();
    this.settledMs = -Infinity;
  }
}
