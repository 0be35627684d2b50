// How many identities were last seen in each minute: answers "active since T" without looking at users.

const MINUTE_MS = 60_000;
const MINUTES_PER_DAY = 1440;

/**
 * Counts identities by the minute of their last heartbeat, in a ring of days (each day a total and,
 * allocated on first use, 1440 minute counts). "Active since T" is the sum of the days after T's day,
 * the minutes after T's minute in that day, and an exact count of T's own minute that the caller
 * takes from its index of last-seen times: at most maxDays + 1440 additions, whatever the number of
 * users. Memory: 5.8 KiB per day with activity, at most (maxDays + 2) days (21 MiB at 3650 days).
 */
export class ActivityIndex {
  private readonly ringDays: number;
  private readonly dayTotals: Float64Array;
  private readonly minuteCounts: (Int32Array | undefined)[];
  /** The day number (UTC epoch day) held in each slot; -1 when empty. */
  private readonly slotDay: Float64Array;
  /** Identities last seen before the oldest day kept: never counted by any allowed query. */
  private forgotten = 0;
  private newestDay = -Infinity;

  constructor(maxDays: number) {
    this.ringDays = maxDays + 2;
    this.dayTotals = new Float64Array(this.ringDays);
    this.minuteCounts = new Array<Int32Array | undefined>(this.ringDays).fill(undefined);
    this.slotDay = new Float64Array(this.ringDays).fill(-1);
  }

  /** An identity's last-seen time moved from `oldMs` (null: new identity) to `newMs`. */
  move(oldMs: number | null, newMs: number): void {
    if (oldMs !== null) this.add(oldMs, -1);
    this.add(newMs, 1);
  }

  /** Adds `delta` identities last seen at `ms` (used by moves and by the rebuild at start-up). */
  add(ms: number, delta: number): void {
    const minute = Math.floor(ms / MINUTE_MS);
    const day = Math.floor(minute / MINUTES_PER_DAY);
    if (day > this.newestDay) this.advanceTo(day);
    if (day <= this.newestDay - this.ringDays) {
      this.forgotten += delta;
      return;
    }
    const slot = day % this.ringDays;
    if (this.slotDay[slot] !== day) this.resetSlot(slot, day);
    this.dayTotals[slot] = (this.dayTotals[slot] as number) + delta;
    let minutes = this.minuteCounts[slot];
    if (!minutes) {
      minutes = new Int32Array(MINUTES_PER_DAY);
      this.minuteCounts[slot] = minutes;
    }
    const index = minute - day * MINUTES_PER_DAY;
    minutes[index] = (minutes[index] as number) + delta;
  }

  /**
   * Identities last seen in minutes strictly after the minute holding `sinceMs`. The caller adds
   * those of that minute at or after `sinceMs`; see `minuteBounds`.
   */
  countAfterMinuteOf(sinceMs: number): number {
    const minute = Math.floor(sinceMs / MINUTE_MS);
    const day = Math.floor(minute / MINUTES_PER_DAY);
    let total = 0;
    const firstDay = Math.max(day + 1, this.newestDay - this.ringDays + 1);
    for (let d = firstDay; d <= this.newestDay; d++) {
      const slot = d % this.ringDays;
      if (this.slotDay[slot] === d) total += this.dayTotals[slot] as number;
    }
    const slot = ((day % this.ringDays) + this.ringDays) % this.ringDays;
    const minutes = this.minuteCounts[slot];
    if (this.slotDay[slot] === day && minutes) {
      for (let i = minute - day * MINUTES_PER_DAY + 1; i < MINUTES_PER_DAY; i++) total += minutes[i] as number;
    }
    return total;
  }

  /** The end (exclusive) of the minute holding `ms`: the caller counts [sinceMs, end) exactly. */
  static minuteEndMs(ms: number): number {
    return (Math.floor(ms / MINUTE_MS) + 1) * MINUTE_MS;
  }

  private advanceTo(day: number): void {
    // Days leaving the ring move into `forgotten`; only happens when the calendar moves on.
    const oldest = day - this.ringDays + 1;
    if (this.newestDay !== -Infinity) {
      for (let d = Math.max(this.newestDay - this.ringDays + 1, oldest - this.ringDays); d < oldest; d++) {
        const slot = ((d % this.ringDays) + this.ringDays) % this.ringDays;
        if (this.slotDay[slot] === d) this.resetSlot(slot, -1);
      }
    }
    this.newestDay = day;
  }

  private resetSlot(slot: number, day: number): void {
    this.forgotten += this.dayTotals[slot] as number;
    this.dayTotals[slot] = 0;
    this.minuteCounts[slot]?.fill(0);
    this.slotDay[slot] = day;
  }
}
