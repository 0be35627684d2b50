// Days in the configured time zone: they tile time exactly, in every IANA zone, daylight saving time included.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createCalendar, shiftDay } from '../src/calendar.js';

const FIRST = Date.UTC(2024, 0, 1);
const LAST = Date.UTC(2027, 11, 31);

/** The local date at `ms` in `timeZone`, by Intl alone: the reference the calendar is checked against. */
function referenceDate(timeZone: string): (ms: number) => string {
  const format = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' });
  return (ms) => format.format(new Date(ms));
}

describe('calendar days', () => {
  it("started an hour early where daylight saving begins at midnight (Santiago's 2026-09-06 at 23:00 on the 5th)", () => {
    const calendar = createCalendar('America/Santiago');
    const day = calendar.dayOf(Date.UTC(2026, 8, 6, 12));
    assert.equal(day.key, '2026-09-06');
    // Clocks go from 23:59:59 (-04) on the 5th to 01:00 (-03) on the 6th: the 6th begins at 04:00 UTC, lasting 23 h.
    assert.equal(new Date(day.startMs).toISOString(), '2026-09-06T04:00:00.000Z');
    assert.equal(calendar.dayOf(day.startMs - 1).key, '2026-09-05');
    assert.equal(calendar.dayOf(day.startMs - 1).endMs, day.startMs);
  });

  it('tile time in every IANA zone over 2024-2027: each day ends where the next begins, at its first instant', () => {
    const zones = Intl.supportedValuesOf('timeZone');
    assert.ok(zones.length > 300, `${zones.length} zones`);
    const wrong: string[] = [];
    for (const zone of zones) {
      const calendar = createCalendar(zone);
      const dateAt = referenceDate(zone);
      let day = calendar.dayOf(FIRST);
      while (day.startMs < LAST && wrong.length < 20) {
        const next = calendar.dayOf(day.endMs);
        const problems = [
          next.startMs !== day.endMs && `ends at ${day.endMs} but the next begins at ${next.startMs}`,
          next.key !== shiftDay(day.key, 1) && `is followed by ${next.key}`,
          dateAt(day.startMs) !== day.key && `begins on ${dateAt(day.startMs)}`,
          dateAt(day.startMs - 1) === day.key && 'begins after its first instant',
        ].filter(Boolean);
        if (problems.length > 0) wrong.push(`${zone} ${day.key} ${problems.join(', ')}`);
        day = next;
      }
    }
    assert.deepEqual(wrong, []);
  });
});
