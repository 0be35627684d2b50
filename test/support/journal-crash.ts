// A store process killed before close (test/journal.test.ts): the heartbeats it records, and the script that records
// them in a child process, prints "acked" once every promise has resolved, and SIGKILLs itself.
import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { createCalendar } from '../../src/calendar.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { StoreOptions } from '../../src/store/store.js';

export const DAY_MS = 86_400_000;
/** Day two, noon (UTC); day one is the day before. */
export const T0 = Date.UTC(2026, 2, 10, 12, 0, 0);
export const CHANNELS = ['lobby', 'salle-été-🎉', null] as const;
/** countActive look-backs that start inside the minutes the heartbeats are in, or at their edges. */
export const LOOK_BACKS = [
  T0 - DAY_MS - 1,
  T0 - DAY_MS,
  T0 - DAY_MS + 1,
  T0 - DAY_MS + 59_999,
  T0 - 30_000,
  T0 - 1,
  T0,
  T0 + 1,
  T0 + 1500,
  T0 + 2000,
  T0 + 2001,
];

export const crashStoreOptions: StoreOptions = {
  heartbeatTimeoutMs: 600_000,
  maxDays: 30,
  maxChannels: 10,
  calendar: createCalendar('UTC'),
  historyMinuteDays: 14,
};

/** A 16-byte pseudonym-like identity (latin1: bytes >= 0x80 too), the same for the same `n`. */
export function identity(n: number): string {
  return createHash('sha256').update(`identity-${n}`).digest().subarray(0, 16).toString('latin1');
}

export type CrashEvent =
  { kind: 'beat'; n: number; channel: string | null; atMs: number } | { kind: 'leave'; n: number; atMs: number };

/**
 * Day one: identities 0 to 199 (in four groups). Day two: 100 to 299 (one group of 200 calls in one turn), then
 * 250 to 259 leave, then 255 to 259 come back without a channel. Each step's events in one list.
 */
export function crashScenario(): CrashEvent[][] {
  const channelOf = (n: number) => CHANNELS[n % 3] ?? null;
  const steps: CrashEvent[][] = [];
  for (let from = 0; from < 200; from += 50)
    steps.push(
      Array.from({ length: 50 }, (_, k) => ({
        kind: 'beat' as const,
        n: from + k,
        channel: channelOf(from + k),
        atMs: T0 - DAY_MS,
      })),
    );
  steps.push(
    Array.from({ length: 200 }, (_, k) => ({ kind: 'beat' as const, n: 100 + k, channel: channelOf(k), atMs: T0 })),
  );
  steps.push(Array.from({ length: 10 }, (_, k) => ({ kind: 'leave' as const, n: 250 + k, atMs: T0 + 1000 })));
  steps.push(
    Array.from({ length: 5 }, (_, k) => ({ kind: 'beat' as const, n: 255 + k, channel: null, atMs: T0 + 2000 })),
  );
  return steps;
}

/** Records one step, every event in the same turn (one journal group). */
async function record(store: SqliteStore, step: readonly CrashEvent[]): Promise<void> {
  await Promise.all(
    step.map((event) =>
      event.kind === 'beat'
        ? store.recordHeartbeats([{ identity: identity(event.n), channel: event.channel }], event.atMs)
        : store.recordLeaves([identity(event.n)], event.atMs),
    ),
  );
}

/** A journal position the store wrote in the meta table (-1: none yet). */
export function position(db: Database.Database, key: 'journal-folded' | 'journal-saved'): number {
  const value = db.prepare<[string], string>('SELECT value FROM meta WHERE key = ?').pluck().get(key);
  return value === undefined ? -1 : Number(value);
}

/** When the script kills itself: once day two is acknowledged, with day one folded or not; or once it is saved. */
export type CrashMode = 'acked' | 'day-one-folded' | 'day-two-saved';

/** Waits (a turn at a time, so the store goes on) until `key` reaches `seq`, for at most 20 s. */
async function until(reader: Database.Database, key: 'journal-folded' | 'journal-saved', seq: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (position(reader, key) < seq) {
    if (Date.now() > deadline) throw new Error(`${key} did not reach ${seq}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * `node --import tsx test/support/journal-crash.ts <database> <mode>`: records day one (groups 0 to 3), waits for
 * the store to fold it (modes but `acked`), records day two (groups 4 to 6), prints "acked" and what the store counts,
 * and kills itself; with `day-two-saved`, only once the saved aggregates count group 6 (as soon as it sees so, to
 * catch the fold of day two before it commits, or while it runs).
 */
async function main(path: string, mode: CrashMode): Promise<void> {
  const steps = crashScenario();
  const store = SqliteStore.open(path, crashStoreOptions, T0 - DAY_MS);
  const reader = new Database(path, { readonly: true });
  for (const step of steps.slice(0, 4)) await record(store, step);
  if (mode !== 'acked') await until(reader, 'journal-folded', 3);
  const foldedBefore = position(reader, 'journal-folded');
  for (const step of steps.slice(4)) await record(store, step);
  if (mode === 'day-two-saved') await until(reader, 'journal-saved', 6);
  const nowMs = T0 + 3000;
  const counts = {
    foldedBefore,
    online: await store.countOnline(nowMs),
    lobby: await store.countOnline(nowMs, 'lobby'),
    activeHour: await store.countActive(nowMs - 3_600_000, nowMs),
    activeTwoDays: await store.countActive(nowMs - 2 * DAY_MS, nowMs),
    activeSince: await Promise.all(LOOK_BACKS.map((sinceMs) => store.countActive(sinceMs, nowMs))),
    days: await store.dailyActivity(['2026-03-09', '2026-03-10']),
  };
  process.stdout.write(`acked ${JSON.stringify(counts)}\n`, () => process.kill(process.pid, 'SIGKILL'));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href)
  await main(process.argv[2] as string, process.argv[3] as CrashMode);
