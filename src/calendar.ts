// Day boundaries in the configured time zone, for daily analytics; cached since every heartbeat asks.

/** Day boundaries in one time zone: one per app, shared by the store and the routes. */
export interface Calendar {
  readonly timeZone: string;
  /** The day holding `ms`: its key (YYYY-MM-DD) and its bounds in UTC epoch ms. */
  dayOf(ms: number): { key: string; startMs: number; endMs: number };
  /** The days from `from` to `to` inclusive, as YYYY-MM-DD keys (both given as keys). */
  daysBetween(from: string, to: string): string[];
}

const DAY_MS = 86_400_000;

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

function utcKey(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

/** Parses YYYY-MM-DD to the UTC midnight of that date, or null. */
export function parseDayKey(key: string): number | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(key);
  if (!match) return null;
  const ms = Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]));
  return utcKey(ms) === key ? ms : null;
}

/** The day `days` after (or, negative, before) a YYYY-MM-DD key. */
export function shiftDay(key: string, days: number): string {
  const ms = parseDayKey(key);
  if (ms === null) throw new RangeError(`not a YYYY-MM-DD day: ${key}`);
  return utcKey(ms + days * DAY_MS);
}

export function createCalendar(timeZone: string): Calendar {
  const format = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  });
  // Offset of the zone from UTC at `ms`, in ms (local = utc + offset).
  const offsetAt = (ms: number): number => {
    const parts: Record<string, number> = {};
    for (const part of format.formatToParts(new Date(ms)))
      if (part.type !== 'literal') parts[part.type] = Number(part.value);
    const local = Date.UTC(
      parts.year ?? 0,
      (parts.month ?? 1) - 1,
      parts.day ?? 1,
      parts.hour ?? 0,
      parts.minute ?? 0,
      parts.second ?? 0,
    );
    return local - (ms - (((ms % 1000) + 1000) % 1000));
  };
  // The UTC instant at which local date `dateUtcMidnight` (a UTC-midnight of the same y-m-d) begins.
  const localMidnight = (dateUtcMidnight: number): number => {
    let guess = dateUtcMidnight - offsetAt(dateUtcMidnight);
    guess = dateUtcMidnight - offsetAt(guess);
    return guess;
  };
  let cached = { key: '', startMs: 0, endMs: -1 };
  const isUtc = timeZone === 'UTC' || timeZone === 'Etc/UTC';

  const dayOf = (ms: number): { key: string; startMs: number; endMs: number } => {
    if (ms >= cached.startMs && ms < cached.endMs) return cached;
    let result;
    if (isUtc) {
      const startMs = Math.floor(ms / DAY_MS) * DAY_MS;
      result = { key: utcKey(startMs), startMs, endMs: startMs + DAY_MS };
    } else {
      const localDate = Math.floor((ms + offsetAt(ms)) / DAY_MS) * DAY_MS;
      const startMs = localMidnight(localDate);
      const endMs = localMidnight(localDate + DAY_MS);
      result = { key: utcKey(localDate), startMs, endMs };
    }
    // Only the current day is cached: it is the one every heartbeat asks about.
    if (result.startMs <= ms && ms < result.endMs) cached = result;
    return result;
  };

  return Object.freeze({
    timeZone,
    dayOf,
    daysBetween(from: string, to: string): string[] {
      const start = parseDayKey(from);
      const end = parseDayKey(to);
      if (start === null || end === null) throw new RangeError('days must be YYYY-MM-DD');
      const days: string[] = [];
      for (let ms = start; ms <= end; ms += DAY_MS) days.push(utcKey(ms));
      return days;
    },
  });
}
