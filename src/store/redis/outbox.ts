// The webhook outbox on Redis: every instance may add (webhook.test), only the one that leads delivers.
import type { RedisConnection } from '../../redis/connection.js';
import type { RedisKeys } from '../../redis/keys.js';
import { LuaScript } from '../../redis/lua.js';
import type { AttemptRecord, Delivery, DeliveryStatus, OutboxEntry, WebhookOutbox } from '../store.js';

const ADD = LuaScript.load(new URL('./outbox-add.lua', import.meta.url));
const ATTEMPT = LuaScript.load(new URL('./outbox-attempt.lua', import.meta.url));
/** GET /webhooks/deliveries looks at this many of the newest deliveries for the ones with a status. */
const LISTED = 2000;

export class RedisOutbox implements WebhookOutbox {
  /** Pending deliveries dropped past the bound by this process's writes. */
  private dropped = 0;

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: RedisKeys,
    private readonly max: number,
    private readonly leads: () => boolean,
  ) {}

  /** Adds entries and saves the alert rules' state (null: leave it) in one atomic call. */
  async save(entries: readonly OutboxEntry[], state: string | null, nowMs: number): Promise<void> {
    const args: (string | number)[] = [this.max, nowMs, state ?? ''];
    for (const entry of entries) {
      const delivery: Delivery = {
        ...entry,
        status: 'pending',
        attempts: 0,
        lastStatus: null,
        lastError: null,
        nextAttemptMs: nowMs,
        createdMs: nowMs,
        doneMs: null,
      };
      args.push(entry.id, JSON.stringify(delivery));
    }
    const dropped = await this.redis.run((client) =>
      ADD.run(
        client,
        [this.keys.outbox(), this.keys.outboxDue(), this.keys.outboxAge(), this.keys.alertsState()],
        args,
      ),
    );
    this.dropped += Number(dropped);
  }

  /** The alert rules' state as last saved. */
  savedState(): Promise<string | null> {
    return this.redis.run((client) => client.get(this.keys.alertsState()));
  }

  add(entries: readonly OutboxEntry[], nowMs: number): Promise<void> {
    return this.save(entries, null, nowMs);
  }

  async due(nowMs: number, limit: number): Promise<Delivery[]> {
    if (!this.leads()) return [];
    const ids = await this.redis.run((client) =>
      client.zrangebyscore(this.keys.outboxDue(), '-inf', nowMs, 'LIMIT', 0, limit),
    );
    return this.read(ids);
  }

  async attempted(id: string, attempt: AttemptRecord, nowMs: number): Promise<void> {
    const status: DeliveryStatus = attempt.delivered
      ? 'delivered'
      : attempt.nextAttemptMs === null
        ? 'failed'
        : 'pending';
    await this.redis.run((client) =>
      ATTEMPT.run(
        client,
        [this.keys.outbox(), this.keys.outboxDue()],
        [id, status, attempt.status ?? '', attempt.error ?? '', attempt.nextAttemptMs ?? '', nowMs],
      ),
    );
  }

  async list(status: DeliveryStatus, limit: number): Promise<Delivery[]> {
    const ids = await this.redis.run((client) => client.zrevrange(this.keys.outboxAge(), 0, LISTED - 1));
    return (await this.read(ids)).filter((delivery) => delivery.status === status).slice(0, limit);
  }

  async depth(): Promise<{ pending: number; dropped: number }> {
    const pending = await this.redis.run((client) => client.zcard(this.keys.outboxDue()));
    return { pending, dropped: this.dropped };
  }

  private async read(ids: readonly string[]): Promise<Delivery[]> {
    if (ids.length === 0) return [];
    const saved = await this.redis.run((client) => client.hmget(this.keys.outbox(), ...ids));
    const deliveries: Delivery[] = [];
    for (const json of saved) if (json !== null) deliveries.push(JSON.parse(json) as Delivery);
    return deliveries;
  }
}
