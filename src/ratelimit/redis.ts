// The shared limiter store: GCRA state in Redis, decided atomically in Lua, so N instances enforce one limit.
import { TurnBatcher } from '../batcher.js';
import type { Rate } from '../config.js';
import type { RedisConnection } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import { LuaScript } from '../redis/lua.js';
import { gcra, type RateDecision, type RateLimiterStore } from './limiter.js';

const GCRA = LuaScript.load(new URL('./gcra.lua', import.meta.url));

interface Pending {
  key: string;
  rate: Rate;
  nowMs: number;
  cost: number;
  done: (decision: RateDecision) => void;
  fail: (error: unknown) => void;
}

/**
 * Each decision reads, decides and writes its key inside one script, so two instances can never
 * both spend the last token. Decisions arriving in the same turn of the event loop share one script
 * call per shard (keys carry the deployment's shard hash tags), which costs Redis far less than a
 * call each. The script returns the time it read; `gcra()` turns that into the full decision
 * (retry after, reset) with the same arithmetic, so the in-process and the shared limiter cannot
 * drift apart. Keys expire once their time has passed: memory is bounded by the callers active
 * within a burst.
 *
 * While Redis is unreachable, `take` fails with StoreUnavailableError: requests are answered 503
 * with Retry-After, like the store's own reads and writes at that moment. The limit is never lifted
 * silently, and never falls back to a per-instance limit that N instances would multiply by N.
 *
 * It is handed a connection and the key layout, like @fastify/rate-limit's Redis store is handed a
 * client and a prefix; whoever made the connection closes it.
 */
export class RedisRateLimiterStore implements RateLimiterStore {
  private readonly decisions = new TurnBatcher<Pending>((batch) => this.flush(batch));

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: RedisKeys,
  ) {}

  take(key: string, rate: Rate, nowMs: number, cost = 1): Promise<RateDecision> {
    return new Promise((done, fail) => this.decisions.add({ key, rate, nowMs, cost, done, fail }));
  }

  /**
   * Deletes the keys' state (an erased identity's budgets): one DEL per shard, since a multi-key DEL must stay within
   * one slot on a Cluster, all sent in one round trip.
   */
  async forget(keys: readonly string[]): Promise<void> {
    const byShard = new Map<number, string[]>();
    for (const key of keys) {
      const shard = this.keys.shardOf(key);
      const names = byShard.get(shard);
      const name = this.keys.rateLimit(shard, key);
      if (names) names.push(name);
      else byShard.set(shard, [name]);
    }
    if (byShard.size === 0) return;
    await this.redis.run((client) => Promise.all([...byShard.values()].map((names) => client.del(...names))));
  }

  private flush(batch: Pending[]): void {
    const byShard = new Map<number, Pending[]>();
    for (const pending of batch) {
      const shard = this.keys.shardOf(pending.key);
      const group = byShard.get(shard);
      if (group) group.push(pending);
      else byShard.set(shard, [pending]);
    }
    for (const [shard, group] of byShard) {
      const keys = group.map((pending) => this.keys.rateLimit(shard, pending.key));
      const args = group.flatMap(({ rate, nowMs, cost }) => [nowMs, rate.periodMs, rate.count, rate.burst, cost]);
      this.redis
        .run((client) => GCRA.run(client, keys, args))
        .then(
          (reply) => {
            const results = reply as (number | string | null)[];
            group.forEach((pending, i) =>
              pending.done(decide(pending, results[2 * i] === 1, results[2 * i + 1] ?? null)),
            );
          },
          (error: unknown) => group.forEach((pending) => pending.fail(error)),
        );
    }
  }
}

function decide({ rate, nowMs, cost }: Pending, allowed: boolean, stored: number | string | null): RateDecision {
  const { decision } = gcra(stored === null ? undefined : Number(stored), rate, nowMs, cost);
  if (decision.allowed === allowed) return decision;
  // Cannot happen while both sides compute in doubles; the script's word is the one that was written.
  return allowed ? { ...decision, allowed: true, retryAfterMs: 0 } : { allowed: false, retryAfterMs: 1, resetMs: 1 };
}
