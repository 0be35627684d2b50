// The in-process limiter store: GCRA state per key, bounded by a least-recently-used cap.
import { LRUCache } from 'lru-cache';
import type { Rate } from '../config.js';
import { gcra, type RateDecision, type RateLimiterStore } from './limiter.js';

/**
 * Memory is bounded by `maxKeys` entries (a 23-character key and one number: about 170 bytes each
 * in V8, measured by `npm run bench`; documented as at most 200). The least recently used key is
 * the one forgotten when the cap is reached. A forgotten key whose theoretical arrival time had
 * passed loses nothing; one that had not gets a fresh budget, which only a flood of more than
 * `maxKeys` distinct callers inside one interval can cause.
 *
 * lru-cache rather than a Map in insertion order: evicting a Map's first key walks over every entry
 * deleted before it, which made each decision cost tens of microseconds once the cap was reached.
 */
export class MemoryRateLimiterStore implements RateLimiterStore {
  private readonly tatMs: LRUCache<string, number>;

  constructor(readonly maxKeys: number) {
    this.tatMs = new LRUCache({ max: maxKeys });
  }

  take(key: string, rate: Rate, nowMs: number, cost = 1): RateDecision {
    const { tatMs, decision } = gcra(this.tatMs.get(key), rate, nowMs, cost);
    if (tatMs !== null) this.tatMs.set(key, tatMs);
    return decision;
  }

  async forget(keys: readonly string[]): Promise<void> {
    for (const key of keys) this.tatMs.delete(key);
  }

  get size(): number {
    return this.tatMs.size;
  }
}
