// The shared limiter store: GCRA state in Redis, decided atomically in Lua, so N instances enforce one limit.
import type { Rate } from '../config.js';
import type { RedisKeys } from '../store/redis.js';
import { LuaScript, type RedisConnection } from '../store/redis/connection.js';
import { gcra, type RateDecision, type RateLimiterStore } from './limiter.js';

const GCRA = LuaScript.load(new URL('./gcra.lua', import.meta.url));

interface Pending {
  key: string;
  rate: Rate;
  nowMs: number;
  done: (decision: RateDecision) => void;
  fail: (error: unknown) => void;
}

/**
 * Each decision reads, decides and writes its key inside one script, so two instances can never
 * both spend the last token. Decisions arriving in the same turn of the event loop share one script
 * call per shard (keys carry the store's shard hash tags), which costs Redis far less than a call
 * each. The script returns the time it read; `gcra()` turns that into the full decision (remaining,
 * reset) with the same arithmetic, so the in-process and the shared limiter cannot drift apart.
 * Keys expire once their time has passed: memory is bounded by the callers active within a burst.
 *
 * While Redis is unreachable, `take` fails with StoreUnavailableError: requests are answered 503
 * with Retry-After, like the store's own reads and writes at that moment. The limit is never lifted
 * silently, and never falls back to a per-instance limit that N instances would multiply by N.
 */
export class RedisRateLimiterStore implements RateLimiterStore {
  readonly localKeys = false;
  private queue: Pending[] = [];
  private scheduled = false;

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: RedisKeys,
  ) {}

  take(key: string, rate: Rate, nowMs: number): Promise<RateDecision> {
    return new Promise((done, fail) => {
      this.queue.push({ key, rate, nowMs, done, fail });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    const byShard = new Map<number, Pending[]>();
    for (const pending of batch) {
      const shard = this.keys.shardOf(pending.key);
      const group = byShard.get(shard);
      if (group) group.push(pending);
      else byShard.set(shard, [pending]);
    }
    for (const [shard, group] of byShard) {
      const keys = group.map((pending) => this.keys.rateLimit(shard, pending.key));
      const args = group.flatMap(({ rate, nowMs }) => [nowMs, rate.periodMs, rate.count, rate.burst]);
      this.redis.run((client) => GCRA.run(client, keys, args)).then(
        (reply) => {
          const results = reply as (number | string | null)[];
          group.forEach((pending, i) => pending.done(decide(pending, results[2 * i] === 1, results[2 * i + 1] ?? null)));
        },
        (error: unknown) => group.forEach((pending) => pending.fail(error)),
      );
    }
  }

  /** The connection belongs to the store, which closes it. */
  async close(): Promise<void> {}
}

function decide({ rate, nowMs }: Pending, allowed: boolean, stored: number | string | null): RateDecision {
  const { decision } = gcra(stored === null ? undefined : Number(stored), rate, nowMs);
  if (decision.allowed === allowed) return decision;
  // Cannot happen while both sides compute in doubles; the script's word is the one that was written.
  return allowed ? { ...decision, allowed: true, retryAfterMs: 0 } : { allowed: false, retryAfterMs: 1, remaining: 0, resetMs: 1 };
}
