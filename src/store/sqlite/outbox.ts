// The webhook outbox of the embedded store: a table in the same database, so an event is saved with the commits.
import type Database from 'better-sqlite3';
import type { AttemptRecord, Delivery, DeliveryStatus, OutboxEntry, WebhookOutbox } from '../store.js';

const STATE_KEY = 'alerts-state';

interface Row {
  id: string;
  event_id: string;
  type: string;
  receiver: string;
  at_ms: number;
  body: string;
  status: DeliveryStatus;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  next_attempt_ms: number | null;
  created_ms: number;
  done_ms: number | null;
}

const deliveryOf = (row: Row): Delivery => ({
  id: row.id,
  eventId: row.event_id,
  type: row.type,
  receiver: row.receiver,
  atMs: row.at_ms,
  body: row.body,
  status: row.status,
  attempts: row.attempts,
  lastStatus: row.last_status,
  lastError: row.last_error,
  nextAttemptMs: row.next_attempt_ms,
  createdMs: row.created_ms,
  doneMs: row.done_ms,
});

export class SqliteOutbox implements WebhookOutbox {
  private readonly statements;
  /** Pending deliveries dropped past the bound since this process started. */
  private dropped = 0;

  constructor(
    private readonly db: Database.Database,
    private readonly max: number,
    /** Runs a write in the store's order of commits (its group commit), resolving once it is durable. */
    private readonly write: (work: () => void) => Promise<void>,
  ) {
    this.statements = {
      insert: db.prepare<[string, string, string, string, number, string, number, number]>(
        'INSERT OR IGNORE INTO webhook_outbox (id, event_id, type, receiver, at_ms, body, next_attempt_ms, created_ms) ' +
          'VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      count: db.prepare<[], number>('SELECT COUNT(*) FROM webhook_outbox').pluck(),
      // Past the bound the oldest go, those done (delivered or failed) before those still pending.
      oldest: db.prepare<[number], { rowid: number; status: DeliveryStatus }>(
        "SELECT rowid, status FROM webhook_outbox ORDER BY status = 'pending', rowid LIMIT ?",
      ),
      remove: db.prepare<[number]>('DELETE FROM webhook_outbox WHERE rowid = ?'),
      due: db.prepare<[number, number], Row>(
        "SELECT * FROM webhook_outbox WHERE status = 'pending' AND next_attempt_ms <= ? ORDER BY next_attempt_ms, rowid " +
          'LIMIT ?',
      ),
      attempted: db.prepare<[DeliveryStatus, number | null, string | null, number | null, number | null, string]>(
        'UPDATE webhook_outbox SET status = ?, attempts = attempts + 1, last_status = ?, last_error = ?, ' +
          "next_attempt_ms = ?, done_ms = ? WHERE id = ? AND status = 'pending'",
      ),
      list: db.prepare<[DeliveryStatus, number], Row>(
        'SELECT * FROM webhook_outbox WHERE status = ? ORDER BY rowid DESC LIMIT ?',
      ),
      pending: db.prepare<[], number>("SELECT COUNT(*) FROM webhook_outbox WHERE status = 'pending'").pluck(),
      state: db.prepare<[string], string>('SELECT value FROM meta WHERE key = ?').pluck(),
      saveState: db.prepare<[string, string]>('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)'),
    };
  }

  /** Inside a transaction of the store: saves entries and the observer's state. */
  insert(entries: readonly OutboxEntry[], state: string | null, nowMs: number): void {
    for (const entry of entries)
      this.statements.insert.run(
        entry.id,
        entry.eventId,
        entry.type,
        entry.receiver,
        entry.atMs,
        entry.body,
        nowMs,
        nowMs,
      );
    if (state !== null) this.statements.saveState.run(STATE_KEY, state);
    if (entries.length > 0) this.bound();
  }

  /** The observer's state as last saved. */
  savedState(): string | null {
    return this.statements.state.get(STATE_KEY) ?? null;
  }

  private bound(): void {
    const over = this.statements.count.get()! - this.max;
    if (over <= 0) return;
    for (const { rowid, status } of this.statements.oldest.all(over)) {
      if (status === 'pending') this.dropped++;
      this.statements.remove.run(rowid);
    }
  }

  add(entries: readonly OutboxEntry[], nowMs: number): Promise<void> {
    return this.write(() => this.insert(entries, null, nowMs));
  }

  async due(nowMs: number, limit: number): Promise<Delivery[]> {
    return this.statements.due.all(nowMs, limit).map(deliveryOf);
  }

  attempted(id: string, attempt: AttemptRecord, nowMs: number): Promise<void> {
    const status: DeliveryStatus = attempt.delivered
      ? 'delivered'
      : attempt.nextAttemptMs === null
        ? 'failed'
        : 'pending';
    return this.write(() => {
      this.statements.attempted.run(
        status,
        attempt.status,
        attempt.error,
        status === 'pending' ? attempt.nextAttemptMs : null,
        status === 'pending' ? null : nowMs,
        id,
      );
    });
  }

  async list(status: DeliveryStatus, limit: number): Promise<Delivery[]> {
    return this.statements.list.all(status, limit).map(deliveryOf);
  }

  async depth(): Promise<{ pending: number; dropped: number }> {
    return { pending: this.statements.pending.get()!, dropped: this.dropped };
  }
}
