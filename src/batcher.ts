// The per-turn batcher: work queued during one turn of the event loop is handed over together when the turn ends.

/**
 * Group commit for every writer: the SQLite store commits a turn's heartbeats in one transaction,
 * the Redis store and the Redis limiter send one script call per shard for them. Items keep their
 * arrival order. `setImmediate` runs after the turn's I/O callbacks, so every request parsed in
 * the same turn joins the same batch, and nothing waits for a timer.
 */
export class TurnBatcher<T> {
  private queue: T[] = [];
  private scheduled = false;

  constructor(private readonly handOver: (batch: T[]) => void) {}

  add(item: T): void {
    this.queue.push(item);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.drain();
    });
  }

  /** Hands over what is queued now instead of at the end of the turn (on close). */
  drain(): void {
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.handOver(batch);
  }
}
