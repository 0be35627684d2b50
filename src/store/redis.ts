// The scale-out store: any number of stateless instances share Redis (standalone or Cluster); its Lua is in redis/*.lua.
import { createHmac } from 'node:crypto';
import type { Config } from '../config.js';
import { ConfigError, StoreUnavailableError } from '../errors.js';
import type { RateLimiterStore } from '../ratelimit/limiter.js';
import { RedisRateLimiterStore } from '../ratelimit/redis.js';
import { LuaScript, connectRedis, type RedisConnection } from './redis/connection.js';
import type { ChannelCount, DayActivity, HeartbeatRecord, RecordOutcome, Store, StoreOptions } from './store.js';

const DAY_MS = 86_400_000;
/** Heartbeats waiting for Redis, across calls, beyond which new ones are refused (503) rather than queued. */
const MAX_PENDING_HEARTBEATS = 100_000;
/** Stale entries each write removes per key: housekeeping keeps up without making any call long. */
const TRIM_BUDGET = 256;
/** Day sketches outlive the longest look-back by a month, so a month's distinct count still finds them. */
const SKETCH_EXTRA_DAYS = 31;
/** A day is over for the distinct-count cache this long after its end (instances' clocks differ a little), in ms. */
const DAY_SETTLED_MS = 60_000;
/** Distinct counts of past days remembered per instance (a number and its key each). */
const DISTINCT_CACHE_SIZE = 4096;

const script = (name: string) => LuaScript.load(new URL(`./redis/${name}.lua`, import.meta.url));
const SCRIPTS = {
  record: script('record'),
  online: script('online'),
  channels: script('channels'),
  admit: script('admit'),
};

export interface RedisStoreSettings {
  /** One redis:// (or rediss://) URL, or several comma-separated seeds of a Redis Cluster. */
  url: string;
  /** Prepended to every key, so several deployments (or tests) share one Redis. No braces. */
  prefix: string;
  /** Identities are spread over this many shards (hash tags); fixed for the life of the data. */
  shards: number;
  /** A fingerprint of the identity secret: instances with different secrets refuse to share data. */
  secretFingerprint?: string;
}

/** The keys of one deployment. Every key of shard s carries the hash tag `{<prefix><s>}`: one Cluster slot per shard. */
export class RedisKeys {
  constructor(
    readonly prefix: string,
    readonly shards: number,
  ) {
    if (/[{}]/.test(prefix)) throw new ConfigError('--redis-prefix / REDIS_PREFIX', 'must not contain { or } (they would change the hash tags)');
  }
  tag(shard: number): string {
    return `{${this.prefix}${shard}}`;
  }
  seen = (shard: number) => `${this.tag(shard)}:seen`;
  left = (shard: number) => `${this.tag(shard)}:left`;
  days = (shard: number) => `${this.tag(shard)}:days`;
  chans = (shard: number) => `${this.tag(shard)}:chans`;
  channelPrefix = (shard: number) => `${this.tag(shard)}:ch:`;
  channel = (shard: number, name: string) => `${this.channelPrefix(shard)}${name}`;
  sketch = (shard: number, day: string) => `${this.tag(shard)}:hll:${day}`;
  probe = (shard: number) => `${this.tag(shard)}:probe`;
  /** The channel limit is one decision for all instances: one key, touched once per turn, not per heartbeat. */
  leases = () => `{${this.prefix}channels}:leases`;
  meta = () => `{${this.prefix}meta}`;
  /** A rate-limit key (`ingest:<pseudonym>`, ...) in the shard `shardOf(key)` picks, so one turn's decisions share a call per shard. */
  rateLimit = (shard: number, key: string) => `${this.tag(shard)}:rl:${Buffer.from(key, 'latin1').toString('base64url')}`;

  /** Pseudonyms are uniform HMAC bytes: their last four bytes pick the shard evenly (keys ending in one do too). */
  shardOf(identity: string): number {
    const n = identity.length;
    let word = 0;
    for (let i = Math.max(0, n - 4); i < n; i++) word = ((word << 8) | (identity.charCodeAt(i) & 0xff)) >>> 0;
    return word % this.shards;
  }
}

const toInt = (value: unknown): number => (value === null || value === undefined ? 0 : Number(value));

interface Pending {
  /** Beats (with their channel, or null when refused or none) and leaves, in call order. */
  ops: { kind: 'b' | 'l'; identity: string; channel: string | null }[];
  nowMs: number;
  channelsRefused: number;
  /** Shards this call writes to: it is acknowledged once every one of them has answered. */
  shards: Set<number>;
  done: (outcome: RecordOutcome) => void;
  fail: (error: unknown) => void;
}

/**
 * Every operation is one script per shard it touches (or one plain command), all sent in the same
 * turn of the event loop on an auto-pipelined connection: one round trip, per Cluster node in
 * parallel. Heartbeats and leaves arriving in the same turn share one script call per shard, in
 * arrival order. Nothing is kept between requests except the channels this instance has seen
 * admitted (a cache that only saves round trips), so instances are interchangeable.
 */
export class RedisStore implements Store {
  readonly kind = 'redis';
  private queue: Pending[] = [];
  private flushScheduled = false;
  private pendingHeartbeats = 0;
  private closed = false;
  private inFlight = new Set<Promise<unknown>>();
  /** Channels this instance saw admitted, and until when (epoch ms): beats on them skip the admission round trip. */
  private readonly admitted = new Map<string, number>();
  /**
   * Distinct counts over days that are over never change, and each costs a PFCOUNT of up to 30
   * dense sketches per shard (about 11 ms in all, see docs/scaling.md), while the analytics ask for
   * the same past windows on every refresh: they are remembered here.
   */
  private readonly distinctCache = new Map<string, number>();
  /** The latest time any caller gave this instance: what "today" is for the cache. */
  private latestNowMs = -Infinity;
  /** Called after each write with its heartbeats and duration (the app's commit metrics). */
  onCommit: ((heartbeats: number, durationMs: number) => void) | null = null;

  constructor(
    readonly redis: RedisConnection,
    readonly keys: RedisKeys,
    private readonly options: StoreOptions,
  ) {}

  /** Connects (standalone or Cluster, detected), checks the deployment's settings agree, and opens the store. */
  static async open(settings: RedisStoreSettings, options: StoreOptions): Promise<RedisStore> {
    const keys = new RedisKeys(settings.prefix, settings.shards);
    const redis = await connectRedis(settings.url);
    try {
      await checkDeployment(redis, keys, options, settings.secretFingerprint);
    } catch (error) {
      redis.client.disconnect();
      throw error;
    }
    return new RedisStore(redis, keys, options);
  }

  async recordHeartbeats(beats: readonly HeartbeatRecord[], nowMs: number): Promise<RecordOutcome> {
    this.assertOpen();
    this.sawTime(nowMs);
    if (this.pendingHeartbeats + beats.length > MAX_PENDING_HEARTBEATS) {
      throw new StoreUnavailableError(`more than ${MAX_PENDING_HEARTBEATS} heartbeats are waiting for redis`);
    }
    this.pendingHeartbeats += beats.length;
    try {
      const refused = await this.admitNewChannels(beats, nowMs);
      let channelsRefused = 0;
      const ops = beats.map(({ identity, channel }) => {
        if (channel !== null && refused.has(channel)) {
          channelsRefused++;
          return { kind: 'b' as const, identity, channel: null };
        }
        return { kind: 'b' as const, identity, channel };
      });
      return await new Promise<RecordOutcome>((done, fail) => this.enqueue({ ops, nowMs, channelsRefused, shards: new Set(), done, fail }));
    } finally {
      this.pendingHeartbeats -= beats.length;
    }
  }

  async recordLeaves(identities: readonly string[], nowMs: number): Promise<void> {
    this.assertOpen();
    this.sawTime(nowMs);
    const ops = identities.map((identity) => ({ kind: 'l' as const, identity, channel: null }));
    await new Promise<RecordOutcome>((done, fail) => this.enqueue({ ops, nowMs, channelsRefused: 0, shards: new Set(), done, fail }));
  }

  /**
   * Channels not known here to be online go through the shared limit first: one more round trip,
   * once per channel per instance while it stays online. Returns the channels refused.
   */
  private async admitNewChannels(beats: readonly HeartbeatRecord[], nowMs: number): Promise<Set<string>> {
    const unknown = new Set<string>();
    for (const { channel } of beats) {
      if (channel !== null && !((this.admitted.get(channel) ?? -Infinity) >= nowMs)) unknown.add(channel);
    }
    if (unknown.size === 0) return unknown;
    const names = [...unknown];
    const flags = await this.admit(names, nowMs);
    const refused = new Set<string>();
    names.forEach((name, i) => (flags[i] ? this.noteAdmitted(name, nowMs) : refused.add(name)));
    return refused;
  }

  private async admit(names: readonly string[], nowMs: number): Promise<boolean[]> {
    const { heartbeatTimeoutMs, maxChannels } = this.options;
    const reply = await this.redis.run((client) => SCRIPTS.admit.run(client, [this.keys.leases()], [nowMs, nowMs + heartbeatTimeoutMs, maxChannels, ...names]));
    return (reply as number[]).map((flag) => flag === 1);
  }

  private noteAdmitted(name: string, nowMs: number): void {
    if (this.admitted.size >= 2 * this.options.maxChannels) {
      for (const [channel, untilMs] of this.admitted) if (untilMs < nowMs) this.admitted.delete(channel);
      if (this.admitted.size >= 2 * this.options.maxChannels) this.admitted.clear();
    }
    this.admitted.set(name, nowMs + this.options.heartbeatTimeoutMs);
  }

  private enqueue(pending: Pending): void {
    if (this.closed) {
      pending.fail(new StoreUnavailableError('closed'));
      return;
    }
    this.queue.push(pending);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Sends this turn's writes: one script call per shard, plus one lease extension for the channels beaten on. */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const startedMs = performance.now();
    const { calendar, heartbeatTimeoutMs, maxDays } = this.options;
    type Day = { index: number; startMs: number; endMs: number };
    const perShard = new Map<number, { days: Map<string, Day>; channels: Map<string, number>; args: (string | Buffer | number)[]; latestMs: number }>();
    const leases = new Map<string, number>();
    let heartbeats = 0;
    for (const pending of batch) {
      const day = calendar.dayOf(pending.nowMs);
      for (const op of pending.ops) {
        const shard = this.keys.shardOf(op.identity);
        pending.shards.add(shard);
        let entry = perShard.get(shard);
        if (!entry) {
          entry = { days: new Map(), channels: new Map(), args: [], latestMs: pending.nowMs };
          perShard.set(shard, entry);
        }
        entry.latestMs = Math.max(entry.latestMs, pending.nowMs);
        const identity = Buffer.from(op.identity, 'latin1');
        if (op.kind === 'l') {
          entry.args.push('l', identity, pending.nowMs, 0, 0);
          continue;
        }
        heartbeats++;
        let shardDay = entry.days.get(day.key);
        if (shardDay === undefined) {
          shardDay = { index: entry.days.size + 1, startMs: day.startMs, endMs: day.endMs };
          entry.days.set(day.key, shardDay);
        }
        let channelIndex = 0;
        if (op.channel !== null) {
          channelIndex = entry.channels.get(op.channel) ?? 0;
          if (channelIndex === 0) entry.channels.set(op.channel, (channelIndex = entry.channels.size + 1));
          leases.set(op.channel, Math.max(leases.get(op.channel) ?? 0, pending.nowMs));
        }
        entry.args.push('b', identity, pending.nowMs, shardDay.index, channelIndex);
      }
    }

    const results = new Map<number, Promise<unknown>>();
    for (const [shard, entry] of perShard) {
      const dayArgs: (string | number)[] = [];
      const dayKeys: string[] = [];
      for (const [dayKey, { startMs, endMs }] of entry.days) {
        dayArgs.push(dayKey, startMs, endMs + (maxDays + SKETCH_EXTRA_DAYS) * DAY_MS);
        dayKeys.push(this.keys.sketch(shard, dayKey));
      }
      const channelNames = [...entry.channels.keys()];
      const keys = [
        this.keys.seen(shard),
        this.keys.left(shard),
        this.keys.days(shard),
        this.keys.chans(shard),
        ...dayKeys,
        ...channelNames.map((name) => this.keys.channel(shard, name)),
      ];
      const args = [
        heartbeatTimeoutMs,
        entry.latestMs - (maxDays + 1) * DAY_MS,
        TRIM_BUDGET,
        this.keys.channelPrefix(shard),
        entry.days.size,
        ...dayArgs,
        channelNames.length,
        ...channelNames,
        ...entry.args,
      ];
      results.set(shard, this.track(this.redis.run((client) => SCRIPTS.record.run(client, keys, args))));
    }
    if (leases.size > 0) {
      // Keeps the shared leases of the channels beaten on in step with their latest heartbeat.
      const latestMs = Math.max(...leases.values());
      const names = [...leases.keys()];
      this.track(this.admit(names, latestMs)).then(
        (flags) => names.forEach((name, i) => (flags[i] ? this.noteAdmitted(name, latestMs) : this.admitted.delete(name))),
        () => names.forEach((name) => this.admitted.delete(name)),
      );
    }
    for (const pending of batch) {
      Promise.all([...pending.shards].map((shard) => results.get(shard))).then(
        () => pending.done({ channelsRefused: pending.channelsRefused }),
        (error: unknown) => pending.fail(error),
      );
    }
    Promise.all(results.values()).then(
      () => this.onCommit?.(heartbeats, performance.now() - startedMs),
      () => {},
    );
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise);
    promise.then(
      () => this.inFlight.delete(promise),
      () => this.inFlight.delete(promise),
    );
    return promise;
  }

  async countOnline(nowMs: number, channel?: string): Promise<number> {
    this.assertOpen();
    this.sawTime(nowMs);
    const cutoff = nowMs - this.options.heartbeatTimeoutMs;
    const counts = await this.redis.run((client) =>
      Promise.all(
        this.shardIndexes().map((shard) =>
          channel === undefined
            ? SCRIPTS.online.run(client, [this.keys.seen(shard), this.keys.left(shard)], [cutoff])
            : client.call('ZCOUNT', [this.keys.channel(shard, channel), cutoff, '+inf']),
        ),
      ),
    );
    return counts.reduce<number>((sum, count) => sum + toInt(count), 0);
  }

  async countActive(sinceMs: number, nowMs: number): Promise<number> {
    this.assertOpen();
    this.sawTime(nowMs);
    const counts = await this.redis.run((client) => Promise.all(this.shardIndexes().map((shard) => client.call('ZCOUNT', [this.keys.seen(shard), sinceMs, '+inf']))));
    return counts.reduce<number>((sum, count) => sum + toInt(count), 0);
  }

  async topChannels(nowMs: number, limit: number): Promise<ChannelCount[]> {
    this.assertOpen();
    this.sawTime(nowMs);
    const cutoff = nowMs - this.options.heartbeatTimeoutMs;
    const replies = await this.redis.run((client) =>
      Promise.all(this.shardIndexes().map((shard) => SCRIPTS.channels.run(client, [this.keys.chans(shard)], [cutoff, this.keys.channelPrefix(shard)]))),
    );
    const totals = new Map<string, number>();
    for (const reply of replies as unknown[][]) {
      for (let i = 0; i + 1 < reply.length; i += 2) {
        const name = String(reply[i]);
        totals.set(name, (totals.get(name) ?? 0) + toInt(reply[i + 1]));
      }
    }
    return [...totals]
      .map(([channel, online]) => ({ channel, online }))
      .sort((a, b) => b.online - a.online || (a.channel < b.channel ? -1 : 1))
      .slice(0, limit);
  }

  async dailyActivity(days: readonly string[]): Promise<DayActivity[]> {
    this.assertOpen();
    if (days.length === 0) return [];
    const fields = days.flatMap((day) => [`${day}:a`, `${day}:n`]);
    const replies = await this.redis.run((client) => Promise.all(this.shardIndexes().map((shard) => client.call('HMGET', [this.keys.days(shard), ...fields]))));
    return days.map((day, i) => {
      let active = 0;
      let fresh = 0;
      for (const reply of replies as unknown[][]) {
        active += toInt(reply[2 * i]);
        fresh += toInt(reply[2 * i + 1]);
      }
      return { day, active, new: fresh };
    });
  }

  /**
   * Each identity lives in one shard, so the shards' sets are disjoint: the distinct count is the sum
   * of each shard's union over the days (PFCOUNT of keys in one slot), and its error shrinks with them.
   */
  async distinctActive(days: readonly string[]): Promise<number> {
    this.assertOpen();
    if (days.length === 0) return 0;
    const key = days.join(',');
    const cached = this.distinctCache.get(key);
    if (cached !== undefined) return cached;
    const counts = await this.redis.run((client) =>
      Promise.all(this.shardIndexes().map((shard) => client.call('PFCOUNT', days.map((day) => this.keys.sketch(shard, day))))),
    );
    const distinct = counts.reduce<number>((sum, count) => sum + toInt(count), 0);
    // Day keys are YYYY-MM-DD, so they compare as dates.
    const settledDay = Number.isFinite(this.latestNowMs) ? this.options.calendar.dayOf(this.latestNowMs - DAY_SETTLED_MS).key : '';
    if (days.every((day) => day < settledDay)) {
      if (this.distinctCache.size >= DISTINCT_CACHE_SIZE) this.distinctCache.delete(this.distinctCache.keys().next().value as string);
      this.distinctCache.set(key, distinct);
    }
    return distinct;
  }

  private sawTime(nowMs: number): void {
    if (nowMs > this.latestNowMs) this.latestNowMs = nowMs;
  }

  /** Ready when every shard's slot takes a write (a master is up for each, and it accepts writes). */
  async check(): Promise<void> {
    this.assertOpen();
    await this.redis.run((client) => Promise.all(this.shardIndexes().map((shard) => client.call('SET', [this.keys.probe(shard), '1', 'PX', 60_000]))));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.flushScheduled) this.flush();
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
    await this.redis.close();
  }

  private shardIndexes(): number[] {
    return Array.from({ length: this.keys.shards }, (_, i) => i);
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('closed');
  }
}

/**
 * The settings that shape the data must be the same on every instance: the first instance writes
 * them, the others compare, and an instance that disagrees refuses to start (exit 2) rather than
 * counting one user as several or misplacing days.
 */
async function checkDeployment(redis: RedisConnection, keys: RedisKeys, options: StoreOptions, secretFingerprint: string | undefined): Promise<void> {
  const wanted: Record<string, string> = { shards: String(keys.shards), timeZone: options.calendar.timeZone };
  if (secretFingerprint !== undefined) wanted.secret = secretFingerprint;
  const names = Object.keys(wanted);
  const stored = (await redis.run(async (client) => {
    for (const name of names) await client.call('HSETNX', [keys.meta(), name, wanted[name] as string]);
    return client.call('HMGET', [keys.meta(), ...names]);
  })) as (string | null)[];
  const flags: Record<string, string> = {
    shards: '--redis-shards / REDIS_SHARDS',
    timeZone: '--time-zone / TIME_ZONE',
    secret: '--identity-secret / IDENTITY_SECRET',
  };
  names.forEach((name, i) => {
    const value = stored[i];
    if (value !== null && value !== undefined && value !== wanted[name]) {
      const shown = name === 'secret' ? 'a different secret' : JSON.stringify(value);
      throw new ConfigError(
        flags[name] ?? name,
        `the data under redis prefix ${JSON.stringify(keys.prefix)} was written with ${shown}; every instance must use the same value (or another --redis-prefix)`,
      );
    }
  });
}

/** Identifies the identity secret without revealing it: an HMAC of a fixed text under it. */
export function secretFingerprint(secret: string): string {
  return createHmac('sha256', secret).update('online-stats identity secret fingerprint').digest('hex').slice(0, 32);
}

/** The store and the shared rate limiter of `--store redis`, on one connection. */
export async function openRedis(config: Readonly<Config>, options: StoreOptions): Promise<{ store: Store; limiter?: RateLimiterStore }> {
  if (config.redisUrl === null) throw new ConfigError('--redis-url / REDIS_URL', 'is required with --store redis');
  if (config.identitySecret === null) throw new ConfigError('--identity-secret / IDENTITY_SECRET', 'is required with --store redis');
  const store = await RedisStore.open(
    { url: config.redisUrl, prefix: config.redisPrefix ?? '', shards: config.redisShards, secretFingerprint: secretFingerprint(config.identitySecret) },
    options,
  );
  return { store, limiter: new RedisRateLimiterStore(store.redis, store.keys) };
}
