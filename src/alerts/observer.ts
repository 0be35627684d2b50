// The alert rules as a store's CountObserver: the watcher's events become outbox entries, one per receiver.
import { createHash } from 'node:crypto';
import type { CountObserver, OutboxEntry } from '../store/store.js';
import { AlertWatcher, type AlertEvent, type WatcherSettings, type WatcherState } from './watcher.js';

/** The body a receiver gets, as the Standard Webhooks specification has it. */
export function eventBody(event: AlertEvent): string {
  return JSON.stringify({ type: event.type, timestamp: new Date(event.atMs).toISOString(), data: event.data });
}

/** An outbox entry per receiver; the entry's id adds a digest of the receiver to the event's. */
export function entriesOf(event: AlertEvent, receivers: readonly string[]): OutboxEntry[] {
  const body = eventBody(event);
  return receivers.map((receiver) => ({
    id: `${event.id}.${createHash('sha256').update(receiver).digest('hex').slice(0, 12)}`,
    eventId: event.id,
    type: event.type,
    receiver,
    atMs: event.atMs,
    body,
  }));
}

export class AlertObserver implements CountObserver {
  readonly watcher: AlertWatcher;

  constructor(
    settings: WatcherSettings,
    private readonly receivers: readonly string[],
    /** Told of each event raised (metrics). */
    private readonly raised: (type: AlertEvent['type']) => void = () => {},
  ) {
    this.watcher = new AlertWatcher(settings);
  }

  restore(
    saved: string | null,
    counts: ReadonlyMap<string, number>,
    peaks: ReadonlyMap<string, { online: number; atMs: number | null }>,
    nowMs: number,
  ): void {
    let state: WatcherState | null = null;
    try {
      state = saved === null ? null : (JSON.parse(saved) as WatcherState);
    } catch {
      // Unreadable state: start as on a first start (reconciling against the counts, announcing no old record).
    }
    this.watcher.restore(state, counts, peaks, nowMs);
  }

  change(series: string, atMs: number, count: number): void {
    this.watcher.change(series, atMs, count);
  }

  advance(nowMs: number): void {
    this.watcher.advance(nowMs);
  }

  take(): { entries: OutboxEntry[]; state: string } | null {
    const events = this.watcher.take();
    if (events.length === 0 && !this.watcher.dirty) return null;
    const entries: OutboxEntry[] = [];
    for (const event of events) {
      this.raised(event.type);
      entries.push(...entriesOf(event, this.receivers));
    }
    return { entries, state: JSON.stringify(this.watcher.state()) };
  }

  /** A webhook.test event for every receiver (POST /webhooks/test). */
  testEntries(nowMs: number, message: string): { eventId: string; entries: OutboxEntry[] } {
    const event = this.watcher.testEvent(nowMs, message);
    this.raised(event.type);
    return { eventId: event.id, entries: entriesOf(event, this.receivers) };
  }
}
