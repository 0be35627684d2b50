// Delivers what the outbox holds, off the heartbeat path: due deliveries each second, retried with backoff until
// delivered or --webhook-retry-for has passed.
import type { Clock } from '../clock.js';
import type { Delivery, WebhookOutbox } from '../store/store.js';
import { retryDelayMs, type WebhookSender } from './sender.js';

/** Deliveries attempted at once. */
const IN_FLIGHT = 16;
const TICK_MS = 1000;

export type DeliveryResult = 'delivered' | 'failed' | 'retried';

export interface DelivererOptions {
  outbox: WebhookOutbox;
  sender: WebhookSender;
  clock: Clock;
  /** Attempts stop once the next would start later than this after the event was added. */
  retryForMs: number;
  /** Told of each attempt's result (metrics). */
  onAttempt?: (result: DeliveryResult) => void;
  onError?: (error: unknown) => void;
  random?: () => number;
}

export class WebhookDeliverer {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly stopping = new AbortController();

  constructor(private readonly options: DelivererOptions) {}

  start(): void {
    this.timer = setInterval(() => this.kick(), TICK_MS);
    this.timer.unref();
  }

  /** Attempts what is due now, unless a round is under way. */
  kick(): void {
    if (this.running !== null || this.stopping.signal.aborted) return;
    this.running = this.round()
      .catch((error: unknown) => this.options.onError?.(error))
      .finally(() => {
        this.running = null;
      });
  }

  /** One round: every delivery due, IN_FLIGHT at a time; resolves when all have been attempted. */
  async round(): Promise<void> {
    const { outbox, clock } = this.options;
    for (;;) {
      const due = await outbox.due(clock.nowMs(), IN_FLIGHT);
      if (due.length === 0 || this.stopping.signal.aborted) return;
      await Promise.all(due.map((delivery) => this.attempt(delivery)));
      if (due.length < IN_FLIGHT) return;
    }
  }

  /** Stops attempting; an attempt under way is abandoned (it stays pending, and is attempted again after a start). */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.stopping.abort();
    await this.running;
  }

  private async attempt(delivery: Delivery): Promise<void> {
    const { outbox, sender, clock, retryForMs } = this.options;
    const outcome = await sender.send(delivery, clock.nowMs(), this.stopping.signal);
    if (this.stopping.signal.aborted && !outcome.delivered) return;
    const nowMs = clock.nowMs();
    const nextMs = nowMs + retryDelayMs(delivery.attempts + 1, this.options.random);
    const nextAttemptMs = outcome.delivered || nextMs > delivery.createdMs + retryForMs ? null : nextMs;
    await outbox.attempted(delivery.id, { ...outcome, nextAttemptMs }, nowMs);
    this.options.onAttempt?.(outcome.delivered ? 'delivered' : nextAttemptMs === null ? 'failed' : 'retried');
  }
}
