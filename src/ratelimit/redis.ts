// The shared limiter store: GCRA state in Redis, one atomic script per decision, so N instances enforce one limit.
import type { Rate } from '../config.js';
import { LuaScript, type RedisConnection } from '../store/redis/connection.js';
import { gcra, type RateDecision, type RateLimiterStore } from './limiter.js';

const GCRA = LuaScript.load(new URL('./gcra.lua', import.meta.url));

/**
 * The script reads, decides and writes in one step, so two instances can never both spend the last
 * token. It returns the time it read; `gcra()` turns that into the full decision (remaining, reset)
 * with the same arithmetic, so the in-process and the shared limiter cannot drift apart. Keys expire
 * once their time has passed, so memory is bounded by the callers active within one interval.
 *
 * While Redis is unreachable, `take` fails with StoreUnavailableError: requests are answered 503
 * (with Retry-After), the same as the store's own reads and writes at that moment; the limit is never
 * silently lifted, and never enforced per instance only.
 */
export class RedisRateLimiterStore implements RateLimiterStore {
  readonly localKeys = false;

  constructor(
    private readonly redis: RedisConnection,
    private readonly keyOf: (key: string) => string,
  ) {}

  async take(key: string, rate: Rate, nowMs: number): Promise<RateDecision> {
    const reply = (await this.redis.run((client) => GCRA.run(client, [this.keyOf(key)], [nowMs, rate.periodMs, rate.count, rate.burst]))) as [number, string | null];
    const [allowed, stored] = reply;
    const { decision } = gcra(stored === null ? undefined : Number(stored), rate, nowMs);
    if (decision.allowed !== (allowed === 1)) {
      // Cannot happen while both sides compute in doubles; the script's word is the one that was written.
      return allowed === 1 ? { ...decision, allowed: true, retryAfterMs: 0 } : { allowed: false, retryAfterMs: 1, remaining: 0, resetMs: 1 };
    }
    return decision;
  }

  /** The connection belongs to the store, which closes it. */
  async close(): Promise<void> {}
}
