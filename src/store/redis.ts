// The scale-out store: any number of stateless instances share Redis (standalone or Cluster); its Lua is in
// redis/*.lua.
import { TurnBatcher } from '../batcher.js';
import { StoreUnavailableError } from '../errors.js';
import type { RedisConnection } from '../redis/connection.js';
import { connectDeployment } from '../redis/deployment.js';
import { RedisKeys } from '../redis/keys.js';
import { LuaScript } from '../redis/lua.js';
import { RedisHistory } from './redis/history.js';
import { RedisOutbox } from './redis/outbox.js';
import { layOutBatch, type RecordOp } from './redis/record-batch.js';
import { SettledWindows } from './window-cache.js';
import type {
  ChannelCount,
  ConcurrencyPeak,
  ConcurrencyPoint,
  ConcurrencyQuery,
  CountObserver,
  DayActivity,
  HeartbeatRecord,
  PresenceRecord,
  RecordOutcome,
  Store,
  StoreOptions,
} from './store.js';
import { DEFAULT_OUTBOX_MAX } from './store.js';

/** Heartbeats waiting for Redis, across calls, beyond which new ones are refused (503) rather than queued. */
const MAX_PENDING_HEARTBEATS = 100_000;
/** A day is over for the distinct-count cache this long after its end (instances' clocks differ a little), in ms. */
const DAY_SETTLED_MS = 60_000;
const DAY_MS = 86_400_000;

const script = (name: string) => LuaScript.load(new URL(`./redis/${name}.lua`, import.meta.url));
const SCRIPTS = {
  record: script('record'),
  online: script('online'),
  channels: script('channels'),
  admit: script('admit'),
  presence: script('presence'),
};

/** Where `RedisStore.open` connects, for a store that owns its connection (tests, tools). */
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

const toInt = (value: unknown): number => (value === null || value === undefined ? 0 : Number(value));

interface Pending {
  ops: readonly RecordOp[];
  nowMs: number;
  channelsRefused: number;
  /** `found`: how many of its erasures found their identity (0 without erasures). */
  done: (outcome: RecordOutcome, found: number) => void;
  fail: (error: unknown) => void;
}

/**
 * Every operation is one script per shard it touches (or one plain command), all sent in the same
 * turn of the event loop on an auto-pipelined connection: one round trip, per Cluster node in
 * parallel. Heartbeats, leaves and erasures arriving in the same turn share one script call per shard, in
 * arrival order. Nothing is kept between requests except the channels this instance has seen
 * admitted (a cache that only saves round trips), so instances are interchangeable.
 */
export class RedisStore implements Store {
  readonly kind = 'redis';
  private readonly writes = new TurnBatcher<Pending>((batch) => this.flush(batch));
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
  private readonly settled = new SettledWindows();
  /** The latest time any caller gave this instance: what "today" is for the cache. */
  private latestNowMs = -Infinity;
  /** Called after each write with its heartbeats and duration (the app's commit metrics). */
  onCommit: ((heartbeats: number, durationMs: number) => void) | null = null;
  private readonly history: RedisHistory;
  readonly outbox: RedisOutbox;
  /** How long an identity is kept after its last heartbeat (StoreOptions.retentionDays), in ms. */
  private readonly retentionMs: number;

  /**
   * On a connection the caller made and closes (the server shares it with the rate limiter), unless
   * `ownsConnection`, when `close()` closes it too.
   */
  constructor(
    readonly redis: RedisConnection,
    readonly keys: RedisKeys,
    private readonly options: StoreOptions,
    private readonly ownsConnection = false,
  ) {
    this.outbox = new RedisOutbox(redis, keys, options.outboxMax ?? DEFAULT_OUTBOX_MAX, () => this.leads());
    this.history = new RedisHistory(redis, keys, options, this.outbox);
    this.retentionMs = (options.retentionDays ?? options.maxDays) * DAY_MS;
  }

  /**
   * Connects (standalone or Cluster, detected), checks the deployment's settings agree, and opens a store owning the
   * connection.
   */
  static async open(settings: RedisStoreSettings, options: StoreOptions): Promise<RedisStore> {
    const keys = new RedisKeys(settings.prefix, settings.shards);
    const redis = await connectDeployment(settings.url, keys, {
      timeZone: options.calendar.timeZone,
      ...(settings.secretFingerprint === undefined ? {} : { secretFingerprint: settings.secretFingerprint }),
    });
    return new RedisStore(redis, keys, options, true);
  }

  async recordHeartbeats(beats: readonly HeartbeatRecord[], nowMs: number): Promise<RecordOutcome> {
    this.assertOpen();
    this.sawTime(nowMs);
    if (this.pendingHeartbeats + beats.length > MAX_PENDING_HEARTBEATS) {
      throw new StoreUnavailableError(`more than ${MAX_PENDING_HEARTBEATS} heartbeats are waiting for redis`);
    }
    this.pendingHeartbeats += beats.length;
    this.history.touch();
    try {
      const refused = await this.admitNewChannels(beats, nowMs);
      let channelsRefused = 0;
      const ops = beats.map(({ identity, channel, presence }): RecordOp => {
        const kind = presence === false ? 'h' : 'b';
        if (channel !== null && refused.has(channel)) {
          channelsRefused++;
          return { kind, identity, channel: null };
        }
        return { kind, identity, channel };
      });
      return await new Promise<RecordOutcome>((done, fail) =>
        this.enqueue({ ops, nowMs, channelsRefused, done, fail }),
      );
    } finally {
      this.pendingHeartbeats -= beats.length;
    }
  }

  async recordLeaves(identities: readonly string[], nowMs: number): Promise<void> {
    this.assertOpen();
    this.sawTime(nowMs);
    this.history.touch();
    const ops = identities.map((identity) => ({ kind: 'l' as const, identity, channel: null }));
    await new Promise<RecordOutcome>((done, fail) => this.enqueue({ ops, nowMs, channelsRefused: 0, done, fail }));
  }

  /**
   * An operation of the same script as heartbeats and leaves (record.lua), so it keeps its place among those of the
   * same turn; the online counts and the history fall at `nowMs` for an identity online then.
   */
  async erase(identities: readonly string[], nowMs: number): Promise<number> {
    this.assertOpen();
    this.sawTime(nowMs);
    if (identities.length === 0) return 0;
    this.history.touch();
    const ops = identities.map((identity) => ({ kind: 'e' as const, identity, channel: null }));
    return new Promise<number>((done, fail) =>
      this.enqueue({ ops, nowMs, channelsRefused: 0, done: (_outcome, found) => done(found), fail }),
    );
  }

  /**
   * One script call per shard asked about (presence.lua), all in one round trip: a consistent answer per shard, and
   * no command per identity.
   */
  async presence(identities: readonly string[], channel: string | null, nowMs: number): Promise<PresenceRecord[]> {
    this.assertOpen();
    this.sawTime(nowMs);
    const perShard = new Map<number, { at: number[]; args: (string | Buffer | number)[] }>();
    const onlineFrom = nowMs - this.options.heartbeatTimeoutMs;
    const keptFrom = nowMs - this.retentionMs;
    identities.forEach((identity, i) => {
      const shard = this.keys.shardOf(identity);
      let group = perShard.get(shard);
      if (group === undefined) perShard.set(shard, (group = { at: [], args: [onlineFrom, keptFrom] }));
      group.at.push(i);
      group.args.push(Buffer.from(identity, 'latin1'));
    });
    const groups = [...perShard];
    const replies = await this.redis.run((client) =>
      Promise.all(
        groups.map(([shard, { args }]) => {
          const keys = [this.keys.seen(shard), this.keys.left(shard), this.keys.hidden(shard)];
          if (channel !== null) keys.push(this.keys.channel(shard, channel));
          return SCRIPTS.presence.run(client, keys, args);
        }),
      ),
    );
    const answers = new Array<PresenceRecord>(identities.length);
    groups.forEach(([, { at }], g) => {
      const reply = replies[g] as (string | number | null)[];
      at.forEach((i, k) => {
        const lastSeen = reply[2 * k];
        answers[i] =
          lastSeen === null || lastSeen === undefined
            ? { online: false, lastSeenMs: null }
            : { online: reply[2 * k + 1] === 1, lastSeenMs: Number(lastSeen) };
      });
    });
    return answers;
  }

  /**
   * Merges identities last seen at given times (the demo's users_data.json): one ZADD GT per shard, so last seen
   * only ever rises and importing again changes nothing. Like the SQLite store's import it sets last seen only: the
   * daily counts and sketches are of heartbeats the service received. Entries older than the retention are dropped
   * by the next write's housekeeping, as any such identity is. The history of each shard written to starts again
   * from its live counts at its next heartbeat, as the imported identities came online unseen by it. An identity that
   * opted out stays so, its marker raised with its last seen (ZADD XX GT), so the retention trims both together.
   */
  async importIdentities(entries: readonly { identity: string; lastSeenMs: number }[]): Promise<void> {
    this.assertOpen();
    const perShard = new Map<number, (string | Buffer | number)[]>();
    for (const { identity, lastSeenMs } of entries) {
      const shard = this.keys.shardOf(identity);
      let members = perShard.get(shard);
      if (members === undefined) perShard.set(shard, (members = []));
      members.push(lastSeenMs, Buffer.from(identity, 'latin1'));
    }
    await this.track(
      this.redis.run((client) =>
        Promise.all(
          [...perShard].map(([shard, members]) =>
            Promise.all([
              client.call('ZADD', [this.keys.seen(shard), 'GT', ...members]),
              client.call('ZADD', [this.keys.hidden(shard), 'XX', 'GT', ...members]),
            ]).then(() => client.hdel(this.keys.hist(shard), 'u')),
          ),
        ),
      ),
    );
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
    const reply = await this.redis.run((client) =>
      SCRIPTS.admit.run(client, [this.keys.leases()], [nowMs, nowMs + heartbeatTimeoutMs, maxChannels, ...names]),
    );
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
    if (this.closed) pending.fail(new StoreUnavailableError('closed'));
    else this.writes.add(pending);
  }

  /** Sends this turn's writes: one script call per shard, plus one lease extension for the channels beaten on. */
  private flush(batch: Pending[]): void {
    const startedMs = performance.now();
    const { calls, shardsOf, erasuresOf, leases, heartbeats } = layOutBatch(batch, this.keys, this.options);
    const results = new Map<number, Promise<unknown>>();
    for (const { shard, keys, args } of calls) {
      results.set(shard, this.track(this.redis.run((client) => SCRIPTS.record.run(client, keys, args))));
    }
    if (leases.size > 0) {
      // Keeps the shared leases of the channels beaten on in step with their latest heartbeat.
      const latestMs = Math.max(...leases.values());
      const names = [...leases.keys()];
      this.track(this.admit(names, latestMs)).then(
        (flags) =>
          names.forEach((name, i) => (flags[i] ? this.noteAdmitted(name, latestMs) : this.admitted.delete(name))),
        () => names.forEach((name) => this.admitted.delete(name)),
      );
    }
    const replyOf = (shard: number) => results.get(shard) as Promise<unknown>;
    batch.forEach((pending, i) => {
      const erasures = erasuresOf[i];
      Promise.all([...(shardsOf[i] ?? [])].map(replyOf))
        .then(async () => {
          // Each shard's reply has one flag per erasure of the call (record.lua).
          let found = 0;
          if (erasures !== undefined)
            for (const { shard, index } of erasures) found += Number(((await replyOf(shard)) as unknown[])[index]);
          return found;
        })
        .then(
          (found) => pending.done({ channelsRefused: pending.channelsRefused }, found),
          (error: unknown) => pending.fail(error),
        );
    });
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
        this.keys
          .shardIndexes()
          .map((shard) =>
            channel === undefined
              ? SCRIPTS.online.run(client, [this.keys.seen(shard), this.keys.left(shard)], [cutoff])
              : client.call('ZCOUNT', [this.keys.channel(shard, channel), cutoff, '+inf']),
          ),
      ),
    );
    return counts.reduce<number>((sum, count) => sum + toInt(count), 0);
  }

  /** Identities past the retention are forgotten, whether or not the trims removed them yet. */
  async countActive(sinceMs: number, nowMs: number): Promise<number> {
    this.assertOpen();
    this.sawTime(nowMs);
    const fromMs = Math.max(sinceMs, nowMs - this.retentionMs);
    const counts = await this.redis.run((client) =>
      Promise.all(
        this.keys.shardIndexes().map((shard) => client.call('ZCOUNT', [this.keys.seen(shard), fromMs, '+inf'])),
      ),
    );
    return counts.reduce<number>((sum, count) => sum + toInt(count), 0);
  }

  async topChannels(nowMs: number, limit: number): Promise<ChannelCount[]> {
    this.assertOpen();
    this.sawTime(nowMs);
    const cutoff = nowMs - this.options.heartbeatTimeoutMs;
    const replies = await this.redis.run((client) =>
      Promise.all(
        this.keys
          .shardIndexes()
          .map((shard) =>
            SCRIPTS.channels.run(client, [this.keys.chans(shard)], [cutoff, this.keys.channelPrefix(shard)]),
          ),
      ),
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
    const replies = await this.redis.run((client) =>
      Promise.all(this.keys.shardIndexes().map((shard) => client.call('HMGET', [this.keys.days(shard), ...fields]))),
    );
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
  async distinctActive(firstDay: string, lastDay: string): Promise<number> {
    this.assertOpen();
    if (firstDay > lastDay) return 0;
    const settledDay = Number.isFinite(this.latestNowMs)
      ? this.options.calendar.dayOf(this.latestNowMs - DAY_SETTLED_MS).key
      : '';
    return this.settled.get(firstDay, lastDay, settledDay, async () => {
      const days = this.options.calendar.daysBetween(firstDay, lastDay);
      const counts = await this.redis.run((client) =>
        Promise.all(
          this.keys.shardIndexes().map((shard) =>
            client.call(
              'PFCOUNT',
              days.map((day) => this.keys.sketch(shard, day)),
            ),
          ),
        ),
      );
      return counts.reduce<number>((sum, count) => sum + toInt(count), 0);
    });
  }

  private sawTime(nowMs: number): void {
    if (nowMs > this.latestNowMs) this.latestNowMs = nowMs;
  }

  async concurrency(query: ConcurrencyQuery, nowMs: number): Promise<ConcurrencyPoint[]> {
    this.assertOpen();
    this.sawTime(nowMs);
    return this.history.concurrency(query, nowMs);
  }

  async peak(channel: string | null, sinceMs: number | null, nowMs: number): Promise<ConcurrencyPeak> {
    this.assertOpen();
    this.sawTime(nowMs);
    return this.history.peak(channel, sinceMs, nowMs);
  }

  /** Every instance calls it; the one holding the history's lease settles (docs/analytics.md). */
  async settle(nowMs: number): Promise<void> {
    this.assertOpen();
    this.sawTime(nowMs);
    await this.history.settle(nowMs);
  }

  /** Only while this instance leads: another that takes the lease over restores its own observer from Redis. */
  async observe(observer: CountObserver, nowMs: number): Promise<void> {
    this.assertOpen();
    this.sawTime(nowMs);
    await this.history.observe(observer, nowMs);
  }

  leads(): boolean {
    return !this.closed && this.history.leading;
  }

  /** Ready when every shard's slot takes a write (a master is up for each, and it accepts writes). */
  async check(): Promise<void> {
    this.assertOpen();
    await this.redis.run((client) =>
      Promise.all(
        this.keys.shardIndexes().map((shard) => client.call('SET', [this.keys.probe(shard), '1', 'PX', 60_000])),
      ),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.writes.drain();
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
    await this.history.close(this.latestNowMs).catch(() => {});
    if (this.ownsConnection) await this.redis.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('closed');
  }
}
