// The Redis key layout of one deployment (docs/scaling.md): every key name the store and the limiter use, and the shard
// of an identity.
import { flagOf } from '../config.js';
import { ConfigError } from '../errors.js';

/** Every key of shard s carries the hash tag `{<prefix><s>}`: one Cluster slot per shard. */
export class RedisKeys {
  constructor(
    readonly prefix: string,
    readonly shards: number,
  ) {
    if (/[{}]/.test(prefix))
      throw new ConfigError(flagOf('redisPrefix'), 'must not contain { or } (they would change the hash tags)');
  }

  tag(shard: number): string {
    return `{${this.prefix}${shard}}`;
  }

  seen = (shard: number): string => `${this.tag(shard)}:seen`;
  left = (shard: number): string => `${this.tag(shard)}:left`;
  days = (shard: number): string => `${this.tag(shard)}:days`;
  chans = (shard: number): string => `${this.tag(shard)}:chans`;
  /** Identities whose latest heartbeat opted out of presence lookups: identity -> that heartbeat (epoch ms). */
  hidden = (shard: number): string => `${this.tag(shard)}:hidden`;
  channelPrefix = (shard: number): string => `${this.tag(shard)}:ch:`;
  channel = (shard: number, name: string): string => `${this.channelPrefix(shard)}${name}`;
  sketch = (shard: number, day: string): string => `${this.tag(shard)}:hll:${day}`;
  probe = (shard: number): string => `${this.tag(shard)}:probe`;
  /** A shard's history: its counts as settled, and its changes not settled yet (record.lua, settle.lua). */
  hist = (shard: number): string => `${this.tag(shard)}:hist`;
  historyLog = (shard: number): string => `${this.tag(shard)}:hlog`;
  /** The settled history of every series is small and read together: one slot. */
  historyLeader = (): string => `{${this.prefix}history}:leader`;
  historyPeaks = (): string => `{${this.prefix}history}:peaks`;
  /** A series' hour summaries: ZSET by hour (epoch ms) of "hour:max:maxAt:min:meanSum:recorded"; "" the total. */
  historyHours = (series: string): string => `{${this.prefix}history}:h:${series}`;
  /**
   * A series' minutes: HASH hour (epoch ms) -> the 960-byte blob of concurrency.ts. Dropped by the settling instance
   * by its clock, not by Redis's expiry: a stored instant is the callers' time.
   */
  historyMinutes = (series: string): string => `{${this.prefix}history}:m:${series}`;
  /** The webhook outbox (store/redis/outbox.ts): deliveries by id, pending ones by when due, all by age. */
  outbox = (): string => `{${this.prefix}history}:outbox`;
  outboxDue = (): string => `{${this.prefix}history}:outbox:due`;
  outboxAge = (): string => `{${this.prefix}history}:outbox:age`;
  /** The alert rules' state, saved with the events they raise. */
  alertsState = (): string => `{${this.prefix}history}:alerts`;
  /** The channel limit is one decision for all instances: one key, touched once per turn, not per heartbeat. */
  leases = (): string => `{${this.prefix}channels}:leases`;
  meta = (): string => `{${this.prefix}meta}`;
  /**
   * A rate-limit key (`ingest:<pseudonym>`, ...) in the shard `shardOf(key)` picks, so one turn's
   * decisions share a call per shard.
   */
  rateLimit = (shard: number, key: string): string =>
    `${this.tag(shard)}:rl:${Buffer.from(key, 'latin1').toString('base64url')}`;

  /** Pseudonyms are uniform HMAC bytes: their last four bytes pick the shard evenly (keys ending in one do too). */
  shardOf(identity: string): number {
    const n = identity.length;
    let word = 0;
    for (let i = Math.max(0, n - 4); i < n; i++) word = ((word << 8) | (identity.charCodeAt(i) & 0xff)) >>> 0;
    return word % this.shards;
  }

  /** Every shard's index, for reads that ask each shard and add up. */
  shardIndexes(): number[] {
    return Array.from({ length: this.shards }, (_, i) => i);
  }
}
