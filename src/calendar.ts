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
/** en-CA's "2026-09-05, 23:00:00". */
const LOCAL_TIME = /^(\d{4})-(\d{2})-(\d{2}),? (\d{2}):(\d{2}):(\d{2})$/;

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
  // format() and a pattern rather than formatToParts(): a third of the time, with formatToParts as
  // the fallback should an ICU version spell en-CA differently.
  const offsetAt = (ms: number): number => {
    const date = new Date(ms);
    const match = LOCAL_TIME.exec(format.format(date));
    let local: number;
    if (match) {
      const [, year, month, day, hour, minute, second] = match.map<number>(Number);
      local = Date.UTC(year as number, (month as number) - 1, day, hour, minute, second);
    } else {
      const parts: Record<string, number> = {};
      for (const part of format.formatToParts(date)) if (part.type !== 'literal') parts[part.type] = Number(part.value);
      local = Date.UTC(
        parts.year ?? 0,
        (parts.month ?? 1) - 1,
        parts.day ?? 1,
        parts.hour ?? 0,
        parts.minute ?? 0,
        parts.second ?? 0,
      );
    }
    return local - (ms - (((ms % 1000) + 1000) % 1000));
  };
  /** The local date at `ms`, as the UTC midnight of the same y-m-d. */
  const localDateAt = (ms: number): number => Math.floor((ms + offsetAt(ms)) / DAY_MS) * DAY_MS;
  // The UTC instant at which local date `dateUtcMidnight` (a UTC-midnight of the same y-m-d) begins:
  // its midnight, or, where daylight saving time begins at midnight (America/Santiago, Atlantic/Azores)
  // and midnight never happens, the first instant of the date, the moment the clocks jump.
  const midnights = new Map<number, number>();
  const localMidnight = (dateUtcMidnight: number): number => {
    const known = midnights.get(dateUtcMidnight);
    if (known !== undefined) return known;
    const start = firstInstant(dateUtcMidnight);
    // A day's end is the next day's start: the next dayOf() asks again.
    if (midnights.size >= 4) midnights.clear();
    midnights.set(dateUtcMidnight, start);
    return start;
  };
  const firstInstant = (dateUtcMidnight: number): number => {
    const first = dateUtcMidnight - offsetAt(dateUtcMidnight);
    const offset = offsetAt(first);
    const guess = dateUtcMidnight - offset;
    // Local midnight when the offset at the guess is the one it was made with, and a moment before is the day before.
    const atGuess = guess === first ? offset : offsetAt(guess);
    if (guess + atGuess === dateUtcMidnight && localDateAt(guess - 1) < dateUtcMidnight) return guess;
    // No midnight: search the hours around the guess for the first instant of the date. Offsets
    // change by at most a day, and only here, a few times a year in a few zones.
    let before = guess - DAY_MS;
    let after = guess + DAY_MS;
    while (localDateAt(before) >= dateUtcMidnight) before -= DAY_MS;
    while (localDateAt(after) < dateUtcMidnight) after += DAY_MS;
    while (after - before > 1) {
      const middle = Math.floor((before + after) / 2);
      if (localDateAt(middle) < dateUtcMidnight) before = middle;
      else after = middle;
    }
    return after;
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
      const localDate = localDateAt(ms);
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
