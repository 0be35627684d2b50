// The in-process limiter store: GCRA state per key in a Map bounded by a least-recently-used cap.
import type { Rate } from '../config.js';
import { gcra, type RateDecision, type RateLimiterStore } from './limiter.js';

/**
 * Memory is bounded by `maxKeys` entries (a 16-byte pseudonym key and one number: about 120 bytes
 * each in V8). A Map keeps insertion order and each decision re-inserts its key, so the first key is
 * the least recently used and is the one forgotten when the cap is reached. A forgotten key whose
 * theoretical arrival time had passed loses nothing; one that had not gets a fresh budget, which
 * only a flood of more than `maxKeys` distinct callers inside one interval can cause.
 */
export class MemoryRateLimiterStore implements RateLimiterStore {
  readonly localKeys = true;
  private readonly tatMs = new Map<string, number>();

  constructor(readonly maxKeys: number) {}

  take(key: string, rate: Rate, nowMs: number): RateDecision {
    const previous = this.tatMs.get(key);
    const { tatMs, decision } = gcra(previous, rate, nowMs);
    if (tatMs !== null) {
      this.tatMs.delete(key);
      this.tatMs.set(key, tatMs);
      if (this.tatMs.size > this.maxKeys) {
        const oldest = this.tatMs.keys().next();
        if (!oldest.done) this.tatMs.delete(oldest.value);
      }
    }
    return decision;
  }

  get size(): number {
    return this.tatMs.size;
  }
}
