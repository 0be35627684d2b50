// The distinct counts of windows of settled days, which can no longer change, so each is merged once.
import { LRUCache } from 'lru-cache';

/**
 * Weekly and monthly actives of a finished day merge 7 and 30 sketches; /analytics/daily asks for
 * them for up to 366 days at once. A window whose days are all settled (no heartbeat can land in
 * them again) has a fixed count, so it is kept here; 4,096 windows (a year of both lengths, five
 * times over) take about 400 KB.
 */
export class SettledWindows {
  private readonly counts = new LRUCache<string, number>({ max: 4096 });

  /**
   * The count of the days `firstDay` to `lastDay`, from the cache or from `count()`; kept when the
   * last day is before `settledDay`.
   */
  async get(
    firstDay: string,
    lastDay: string,
    settledDay: string,
    count: () => Promise<number> | number,
  ): Promise<number> {
    const key = `${firstDay}..${lastDay}`;
    const cached = this.counts.get(key);
    if (cached !== undefined) return cached;
    const distinct = await count();
    // Day keys are YYYY-MM-DD, so they compare as dates.
    if (lastDay < settledDay) this.counts.set(key, distinct);
    return distinct;
  }
}
