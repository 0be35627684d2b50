// Turns exact changes of the online counts into alert, record and occupancy events: pure, time passed in.
import { createHash, randomUUID } from 'node:crypto';
import { parseRule, type AlertRule } from '../alert-rules.js';

export type AlertEventType =
  'alert.firing' | 'alert.resolved' | 'peak.record' | 'channel.occupied' | 'channel.vacated' | 'webhook.test';

export interface AlertEvent {
  /**
   * Derived from the event itself (type, series, rule, instant): the same event computed twice (e.g. by two
   * instances after a failover) has the same id. "evt_" + 32 lowercase hex characters of a sha256.
   */
  id: string;
  type: AlertEventType;
  /** The instant the event happened (epoch ms), not when it was noticed. */
  atMs: number;
  /** The payload's `data` (JSON-serialisable, snake_case keys, instants as ISO 8601 strings). */
  data: Record<string, unknown>;
}

export interface WatcherSettings {
  rules: readonly AlertRule[];
  /** channel.occupied / channel.vacated on or off. */
  channelEvents: boolean;
  /** A channel must stay empty this long before channel.vacated (a page reload must not fire a pair). */
  channelVacateDelayMs: number;
  /** At most one peak.record per series per this interval; a record set during it is announced when it ends. */
  recordCooldownMs: number;
  /** peak.record for channels too (the total always). */
  recordChannels: boolean;
}

/**
 * What must be saved together with the events taken since, so a restart neither repeats nor forgets
 * (JSON-serialisable). Rules waiting out their `for` are not saved: restore() starts their wait again.
 */
export interface WatcherState {
  version: 1;
  /** The instant the watcher had seen up to: a store peak reached after it is a record not yet announced. */
  asOfMs: number;
  /** Rules firing, by their normalised text. */
  firing: { rule: string; sinceMs: number; firedAtMs: number }[];
  /** Channels occupied (vacatedAtMs null) or empty since vacatedAtMs with channel.vacated still to come. */
  channels: { channel: string; occupiedSinceMs: number; vacatedAtMs: number | null }[];
  /**
   * Per series ('' the total) that had a peak.record: the last figure announced and the instant it was
   * reached (atMs), and the instant of that event (announcedAtMs), from which the cooldown runs.
   */
  records: { series: string; online: number; atMs: number | null; announcedAtMs: number }[];
}

const IDLE = 0;
const PENDING = 1;
const FIRING = 2;

interface RuleTrack {
  readonly rule: AlertRule;
  phase: typeof IDLE | typeof PENDING | typeof FIRING;
  /** When the condition began to hold (pending or firing). */
  sinceMs: number;
  /** When a pending rule fires if the condition still holds. */
  dueMs: number;
  firedAtMs: number;
}

/** A series some rule watches, with its current count (needed when a `for` wait ends between changes). */
interface SeriesTrack {
  count: number;
  readonly rules: RuleTrack[];
}

interface ChannelTrack {
  occupiedSinceMs: number;
  /** Empty since then, channel.vacated pending; null: occupied. */
  vacatedAtMs: number | null;
}

interface PeakTrack {
  readonly series: string;
  /** The all-time peak as known (announced or not). */
  peakOnline: number;
  peakAtMs: number | null;
  /** The last figure announced, or the peak taken as known at restore (0: none, so `previous` is null). */
  announcedOnline: number;
  announcedAtMs: number | null;
  /** The instant of the last peak.record for this series: the cooldown runs from it. */
  lastEventAtMs: number | null;
  /** A record is waiting for the cooldown to end. */
  pending: boolean;
}

interface RaisedEvent {
  type: AlertEventType;
  atMs: number;
  /** What the id is a hash of. */
  idKey: string;
  data: Record<string, unknown>;
}

function holds(rule: AlertRule, count: number): boolean {
  switch (rule.comparison) {
    case '>':
      return count > rule.threshold;
    case '>=':
      return count >= rule.threshold;
    case '<':
      return count < rule.threshold;
    case '<=':
      return count <= rule.threshold;
  }
}

/** Past the far edge of the hysteresis band (the table in rules.ts). */
function resolves(rule: AlertRule, count: number): boolean {
  switch (rule.comparison) {
    case '>':
      return count <= rule.threshold - rule.hysteresis;
    case '>=':
      return count < rule.threshold - rule.hysteresis;
    case '<':
      return count >= rule.threshold + rule.hysteresis;
    case '<=':
      return count > rule.threshold + rule.hysteresis;
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));
const channelOf = (series: string): string | null => (series === '' ? null : series);
const eventId = (material: string): string => `evt_${createHash('sha256').update(material).digest('hex').slice(0, 32)}`;

/**
 * Feed it every count change (change), the passing of time (advance), and take() the events it raised.
 *
 * Time only moves forward: an instant earlier than one already seen (by change, advance or restore) is taken
 * as that one. A change first raises whatever came due by its instant, so events come out in order of their
 * instants; advance() is needed only for what comes due while no count changes: call it every second or so,
 * and before take() so a batch holds everything up to now.
 *
 * Memory is bounded by: one entry per rule; one per channel occupied or waiting out its vacate delay (at most
 * the store's maxChannels plus those emptied within the delay); one peak per series, i.e. the total and, with
 * recordChannels, every channel ever seen (as the store keeps all-time peaks per channel itself).
 */
export class AlertWatcher {
  private readonly settings: WatcherSettings;
  private readonly watched = new Map<string, SeriesTrack>();
  private readonly channels = new Map<string, ChannelTrack>();
  /** Channels waiting out the vacate delay by vacatedAtMs (time only moves forward): the first is due first. */
  private readonly vacating = new Map<string, ChannelTrack>();
  private readonly peaks = new Map<string, PeakTrack>();
  private readonly pendingRecords = new Set<PeakTrack>();
  private raised: RaisedEvent[] = [];
  /** The latest instant seen. */
  private seenMs = 0;
  /** No deadline comes due before this (it may be early after a cancel: then a scan finds nothing). */
  private nextDueMs = Infinity;
  private changed = false;
  /** Events at the same instant with the same id material get an ordinal, so their ids still differ. */
  private idInstantMs = -1;
  private readonly idOrdinals = new Map<string, number>();
  private testEvents = 0;

  constructor(settings: WatcherSettings) {
    this.settings = settings;
    for (const rule of settings.rules) {
      const series = rule.channel ?? '';
      let track = this.watched.get(series);
      if (track === undefined) {
        track = { count: 0, rules: [] };
        this.watched.set(series, track);
      }
      track.rules.push({ rule, phase: IDLE, sinceMs: 0, dueMs: 0, firedAtMs: 0 });
    }
  }

  /**
   * Starts from saved state (null: first start) and the counts and all-time peaks the store holds now.
   *
   * Reconciles at nowMs: a rule whose condition holds but was not firing starts its `for` wait; one firing
   * resolves if the count is past its hysteresis band (and one whose rule was removed from the settings
   * resolves); a channel occupied now and not before is occupied, one empty now starts its vacate delay, and a
   * vacate pending before but occupied now is cancelled (what happened while down is unknown: taken as a reload).
   * A store peak above the last announced record is announced (subject to the cooldown); on a first start, or
   * for a peak reached before the state was saved that was never announced, the store's peaks are taken as
   * known, so enabling alerts does not announce old records.
   */
  restore(
    state: WatcherState | null,
    counts: ReadonlyMap<string, number>,
    peaks: ReadonlyMap<string, { online: number; atMs: number | null }>,
    nowMs: number,
  ): void {
    if (state !== null && state.version !== 1) {
      throw new Error(`alert watcher state: version ${String(state.version)} is not supported (expected 1)`);
    }
    this.seenMs = nowMs;
    this.channels.clear();
    this.vacating.clear();
    this.peaks.clear();
    this.pendingRecords.clear();

    const firing = new Map((state?.firing ?? []).map((entry) => [entry.rule, entry]));
    for (const [series, track] of this.watched) {
      track.count = counts.get(series) ?? 0;
      for (const ruleTrack of track.rules) {
        ruleTrack.phase = IDLE;
        const saved = firing.get(ruleTrack.rule.text);
        firing.delete(ruleTrack.rule.text);
        if (saved !== undefined) {
          ruleTrack.phase = FIRING;
          ruleTrack.sinceMs = saved.sinceMs;
          ruleTrack.firedAtMs = saved.firedAtMs;
        }
        this.evaluate(series, ruleTrack, nowMs, track.count);
      }
    }
    for (const removed of firing.values()) this.resolveRemoved(removed, counts, nowMs);

    if (this.settings.channelEvents) this.restoreChannels(state, counts, nowMs);
    this.restorePeaks(state, peaks, nowMs);
    this.changed = true;
    this.runDue(nowMs);
  }

  /**
   * The count of `series` ('' the total, else a channel) became `count` at `atMs`. Hot path: on every change of
   * a count; O(rules on that series), and allocates only when an event is raised or a channel starts or ends.
   */
  change(series: string, atMs: number, count: number): void {
    if (atMs < this.seenMs) atMs = this.seenMs;
    else this.seenMs = atMs;
    if (this.nextDueMs <= atMs) this.runDue(atMs);

    const channel = series !== '';
    if (channel && this.settings.channelEvents) this.occupancy(series, atMs, count);
    if (!channel || this.settings.recordChannels) this.record(series, atMs, count);
    const track = this.watched.get(series);
    if (track !== undefined) {
      track.count = count;
      const rules = track.rules;
      for (let i = 0; i < rules.length; i++) this.evaluate(series, rules[i] as RuleTrack, atMs, count);
    }
    // A vacate delay of 0 comes due at once.
    if (this.nextDueMs <= atMs) this.runDue(atMs);
  }

  /**
   * Time reached nowMs: `for` waits, vacate delays and record cooldowns that ended by then raise their events,
   * each at the instant it ended.
   */
  advance(nowMs: number): void {
    if (nowMs > this.seenMs) this.seenMs = nowMs;
    if (this.nextDueMs <= this.seenMs) this.runDue(this.seenMs);
  }

  /** Events raised since the last call, in order of their instants. */
  take(): AlertEvent[] {
    const raised = this.raised;
    if (raised.length === 0) return [];
    this.raised = [];
    // Stable: events of one instant keep the order they were raised in.
    raised.sort((a, b) => a.atMs - b.atMs);
    return raised.map((event) => ({
      id: this.idOf(event),
      type: event.type,
      atMs: event.atMs,
      data: event.data,
    }));
  }

  /** Whether state changed since the last state() call. */
  get dirty(): boolean {
    return this.changed;
  }

  state(): WatcherState {
    this.changed = false;
    const firing: WatcherState['firing'] = [];
    for (const track of this.watched.values()) {
      for (const { rule, phase, sinceMs, firedAtMs } of track.rules) {
        if (phase === FIRING) firing.push({ rule: rule.text, sinceMs, firedAtMs });
      }
    }
    const channels: WatcherState['channels'] = [];
    for (const [channel, { occupiedSinceMs, vacatedAtMs }] of this.channels) {
      channels.push({ channel, occupiedSinceMs, vacatedAtMs });
    }
    const records: WatcherState['records'] = [];
    for (const peak of this.peaks.values()) {
      if (peak.lastEventAtMs === null) continue;
      records.push({
        series: peak.series,
        online: peak.announcedOnline,
        atMs: peak.announcedAtMs,
        announcedAtMs: peak.lastEventAtMs,
      });
    }
    return { version: 1, asOfMs: this.seenMs, firing, channels, records };
  }

  /** A webhook.test event at nowMs; its id is unique per call. */
  testEvent(nowMs: number, message: string): AlertEvent {
    this.testEvents++;
    return {
      id: eventId(`webhook.test\n${nowMs}\n${this.testEvents}\n${randomUUID()}`),
      type: 'webhook.test',
      atMs: nowMs,
      data: { message, at: iso(nowMs) },
    };
  }

  private evaluate(series: string, track: RuleTrack, atMs: number, count: number): void {
    const rule = track.rule;
    switch (track.phase) {
      case IDLE:
        if (!holds(rule, count)) return;
        track.sinceMs = atMs;
        if (rule.forMs === 0) {
          this.fire(series, track, atMs, count);
        } else {
          track.phase = PENDING;
          track.dueMs = atMs + rule.forMs;
          if (track.dueMs < this.nextDueMs) this.nextDueMs = track.dueMs;
        }
        return;
      case PENDING:
        // A wait that ended by atMs already fired (runDue runs first), so this one is still running.
        if (!holds(rule, count)) track.phase = IDLE;
        return;
      case FIRING:
        if (!resolves(rule, count)) return;
        track.phase = IDLE;
        this.changed = true;
        this.raiseResolved(rule.text, series, atMs, count, track.firedAtMs);
    }
  }

  private fire(series: string, track: RuleTrack, atMs: number, count: number): void {
    const { rule } = track;
    track.phase = FIRING;
    track.firedAtMs = atMs;
    this.changed = true;
    this.raise('alert.firing', atMs, [series, rule.text, atMs], {
      rule: rule.text,
      channel: rule.channel,
      comparison: rule.comparison,
      threshold: rule.threshold,
      online: count,
      since: iso(track.sinceMs),
    });
  }

  private raiseResolved(rule: string, series: string, atMs: number, count: number, firedAtMs: number): void {
    this.raise('alert.resolved', atMs, [series, rule, atMs], {
      rule,
      channel: channelOf(series),
      online: count,
      fired_at: iso(firedAtMs),
      duration_ms: atMs - firedAtMs,
    });
  }

  /** A rule firing when saved but gone from the settings: resolved, so no receiver keeps an alert open forever. */
  private resolveRemoved(
    saved: WatcherState['firing'][number],
    counts: ReadonlyMap<string, number>,
    nowMs: number,
  ): void {
    let series: string;
    try {
      series = parseRule(saved.rule).channel ?? '';
    } catch {
      return; // saved by a version with another syntax: nothing to say about it
    }
    this.changed = true;
    this.raiseResolved(saved.rule, series, nowMs, counts.get(series) ?? 0, saved.firedAtMs);
  }

  private occupancy(channel: string, atMs: number, count: number): void {
    const track = this.channels.get(channel);
    if (count > 0) {
      if (track === undefined) {
        this.occupy(channel, atMs, count);
      } else if (track.vacatedAtMs !== null) {
        // Back within the delay (a pending vacate that ended by atMs was raised first): a reload, no events.
        track.vacatedAtMs = null;
        this.vacating.delete(channel);
        this.changed = true;
      }
    } else if (track !== undefined && track.vacatedAtMs === null) {
      this.startVacate(channel, track, atMs);
    }
  }

  private occupy(channel: string, atMs: number, count: number): void {
    this.channels.set(channel, { occupiedSinceMs: atMs, vacatedAtMs: null });
    this.changed = true;
    this.raise('channel.occupied', atMs, [channel, '', atMs], { channel, online: count, at: iso(atMs) });
  }

  private startVacate(channel: string, track: ChannelTrack, atMs: number): void {
    track.vacatedAtMs = atMs;
    this.vacating.set(channel, track);
    this.changed = true;
    const dueMs = atMs + this.settings.channelVacateDelayMs;
    if (dueMs < this.nextDueMs) this.nextDueMs = dueMs;
  }

  private record(series: string, atMs: number, count: number): void {
    let peak = this.peaks.get(series);
    if (peak === undefined) {
      if (count <= 0) return;
      peak = this.newPeak(series, 0, null);
    }
    if (count <= peak.peakOnline) return;
    peak.peakOnline = count;
    peak.peakAtMs = atMs;
    this.announceOrWait(peak, atMs);
  }

  private newPeak(series: string, online: number, atMs: number | null): PeakTrack {
    const peak: PeakTrack = {
      series,
      peakOnline: online,
      peakAtMs: atMs,
      announcedOnline: online,
      announcedAtMs: atMs,
      lastEventAtMs: null,
      pending: false,
    };
    this.peaks.set(series, peak);
    return peak;
  }

  /** A new record: announced at atMs, or when the cooldown since the last announcement ends. */
  private announceOrWait(peak: PeakTrack, atMs: number): void {
    if (peak.lastEventAtMs === null || atMs - peak.lastEventAtMs >= this.settings.recordCooldownMs) {
      this.announce(peak, atMs);
    } else if (!peak.pending) {
      peak.pending = true;
      this.pendingRecords.add(peak);
      const dueMs = peak.lastEventAtMs + this.settings.recordCooldownMs;
      if (dueMs < this.nextDueMs) this.nextDueMs = dueMs;
    }
  }

  private announce(peak: PeakTrack, atMs: number): void {
    const previous =
      peak.announcedOnline > 0 ? { online: peak.announcedOnline, at: isoOrNull(peak.announcedAtMs) } : null;
    this.raise('peak.record', atMs, [peak.series, '', atMs, peak.peakOnline], {
      channel: channelOf(peak.series),
      online: peak.peakOnline,
      at: isoOrNull(peak.peakAtMs),
      previous,
    });
    peak.announcedOnline = peak.peakOnline;
    peak.announcedAtMs = peak.peakAtMs;
    peak.lastEventAtMs = atMs;
    peak.pending = false;
    this.pendingRecords.delete(peak);
    this.changed = true;
  }

  /** Raises what came due by nowMs, each at its own instant, and finds the next deadline. */
  private runDue(nowMs: number): void {
    let nextDueMs = Infinity;
    for (const [series, track] of this.watched) {
      for (const ruleTrack of track.rules) {
        if (ruleTrack.phase !== PENDING) continue;
        // No change came since the wait began (it would have run this first), so the count is the one it waited on.
        if (ruleTrack.dueMs <= nowMs) this.fire(series, ruleTrack, ruleTrack.dueMs, track.count);
        else nextDueMs = Math.min(nextDueMs, ruleTrack.dueMs);
      }
    }
    for (const [channel, track] of this.vacating) {
      const vacatedAtMs = track.vacatedAtMs ?? nowMs;
      const dueMs = vacatedAtMs + this.settings.channelVacateDelayMs;
      if (dueMs > nowMs) {
        nextDueMs = Math.min(nextDueMs, dueMs);
        break; // the rest emptied later, so come due later
      }
      this.vacating.delete(channel);
      this.channels.delete(channel);
      this.changed = true;
      // The event happens when the delay ends (atMs); `at` says when the channel became empty, and the id is
      // made from that instant, which two instances agree on even if their delays ended at different calls.
      this.raise('channel.vacated', dueMs, [channel, '', vacatedAtMs], {
        channel,
        at: iso(vacatedAtMs),
        occupied_since: iso(track.occupiedSinceMs),
      });
    }
    for (const peak of this.pendingRecords) {
      const dueMs = (peak.lastEventAtMs ?? nowMs) + this.settings.recordCooldownMs;
      if (dueMs <= nowMs) this.announce(peak, dueMs);
      else nextDueMs = Math.min(nextDueMs, dueMs);
    }
    this.nextDueMs = nextDueMs;
  }

  private restoreChannels(state: WatcherState | null, counts: ReadonlyMap<string, number>, nowMs: number): void {
    const saved = [...(state?.channels ?? [])].sort(
      (a, b) => (a.vacatedAtMs ?? Infinity) - (b.vacatedAtMs ?? Infinity),
    );
    for (const { channel, occupiedSinceMs, vacatedAtMs } of saved) {
      const track: ChannelTrack = { occupiedSinceMs, vacatedAtMs: null };
      this.channels.set(channel, track);
      const occupied = (counts.get(channel) ?? 0) > 0;
      if (vacatedAtMs !== null && !occupied) {
        track.vacatedAtMs = vacatedAtMs;
        this.vacating.set(channel, track);
      }
    }
    // Emptied while down (or at this instant): the delay starts now.
    for (const [channel, track] of this.channels) {
      if (track.vacatedAtMs === null && (counts.get(channel) ?? 0) <= 0) this.startVacate(channel, track, nowMs);
    }
    for (const [series, count] of counts) {
      if (series !== '' && count > 0 && !this.channels.has(series)) this.occupy(series, nowMs, count);
    }
  }

  private restorePeaks(
    state: WatcherState | null,
    peaks: ReadonlyMap<string, { online: number; atMs: number | null }>,
    nowMs: number,
  ): void {
    const announced = new Map((state?.records ?? []).map((entry) => [entry.series, entry]));
    const tracked = (series: string): boolean => series === '' || this.settings.recordChannels;
    for (const [series, saved] of announced) {
      if (!tracked(series)) continue;
      const peak = this.newPeak(series, saved.online, saved.atMs);
      peak.lastEventAtMs = saved.announcedAtMs;
    }
    for (const [series, stored] of peaks) {
      if (!tracked(series) || stored.online <= 0) continue;
      let peak = this.peaks.get(series);
      if (peak === undefined) {
        // Never announced: a peak reached after the state was saved is a record not yet told; one from before
        // (or any, on a first start) is history the receivers need not hear about.
        const unannounced = state !== null && stored.atMs !== null && stored.atMs > state.asOfMs;
        peak = unannounced ? this.newPeak(series, 0, null) : this.newPeak(series, stored.online, stored.atMs);
      }
      if (stored.online <= peak.peakOnline) continue;
      peak.peakOnline = stored.online;
      peak.peakAtMs = stored.atMs;
      this.announceOrWait(peak, nowMs);
    }
  }

  private raise(
    type: AlertEventType,
    atMs: number,
    idParts: ReadonlyArray<string | number>,
    data: Record<string, unknown>,
  ): void {
    this.raised.push({ type, atMs, idKey: JSON.stringify([type, ...idParts]), data });
  }

  private idOf(event: RaisedEvent): string {
    if (event.atMs !== this.idInstantMs) {
      this.idInstantMs = event.atMs;
      this.idOrdinals.clear();
    }
    const ordinal = (this.idOrdinals.get(event.idKey) ?? 0) + 1;
    this.idOrdinals.set(event.idKey, ordinal);
    return eventId(ordinal === 1 ? event.idKey : `${event.idKey}#${ordinal}`);
  }
}
