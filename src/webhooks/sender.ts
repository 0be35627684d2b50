// One attempt at a webhook delivery: signed as Standard Webhooks specifies, sent with a deadline, no redirect followed.
import { Webhook } from 'standardwebhooks';
import type { AttemptRecord, Delivery } from '../store/store.js';

export type WebhookFormat = 'standard' | 'slack' | 'discord';

/** What one attempt came to, before the outbox decides when to try again. */
export type AttemptOutcome = Omit<AttemptRecord, 'nextAttemptMs'>;

/** The first retry waits about this long; each one after, twice as long, up to RETRY_CAP_MS. */
const RETRY_BASE_MS = 1000;
const RETRY_CAP_MS = 3_600_000;

/**
 * How long to wait before attempt `attempts + 1`: exponential backoff with full jitter in its upper half (so
 * receivers coming back are not hit by every sender at once), never under half the backoff.
 */
export function retryDelayMs(attempts: number, random: () => number = Math.random): number {
  const backoff = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(backoff * (0.5 + random() / 2));
}

interface Body {
  type: string;
  timestamp: string;
  data: Record<string, unknown>;
}

/** One line a person reads in Slack or Discord. */
export function readableText(body: Body): string {
  const d = body.data;
  const where = typeof d.channel === 'string' ? ` on ${d.channel}` : '';
  const at = typeof d.at === 'string' ? d.at : body.timestamp;
  switch (body.type) {
    case 'alert.firing':
      return `:rotating_light: Alert firing: ${String(d.rule)} (online now: ${String(d.online)}, since ${String(d.since)})`;
    case 'alert.resolved':
      return `:white_check_mark: Alert resolved: ${String(d.rule)} (online now: ${String(d.online)})`;
    case 'peak.record':
      return `:trophy: New record${where}: ${String(d.online)} online at ${at}`;
    case 'channel.occupied':
      return `Channel ${String(d.channel)} is occupied (${String(d.online)} online)`;
    case 'channel.vacated':
      return `Channel ${String(d.channel)} is empty since ${at}`;
    case 'webhook.test':
      return `online-stats test: ${String(d.message)}`;
    default:
      return `${body.type} at ${body.timestamp}`;
  }
}

export interface SenderOptions {
  /** The Standard Webhooks secret, `whsec_` and base64. */
  secret: string;
  format: WebhookFormat;
  /** Longest an attempt may take, connection to the end of the answer. */
  timeoutMs: number;
  userAgent: string;
}

export class WebhookSender {
  private readonly signer: Webhook;

  constructor(private readonly options: SenderOptions) {
    this.signer = new Webhook(options.secret);
  }

  /** The body as sent: the event itself, or a message Slack's or Discord's incoming webhooks accept. */
  payloadOf(delivery: Delivery): string {
    if (this.options.format === 'standard') return delivery.body;
    const text = readableText(JSON.parse(delivery.body) as Body);
    return JSON.stringify(this.options.format === 'slack' ? { text } : { content: text });
  }

  /** `signal`: aborts the attempt (shutdown; on Node before 20.3, which lacks AbortSignal.any, the deadline does). */
  async send(delivery: Delivery, nowMs: number, signal?: AbortSignal): Promise<AttemptOutcome> {
    const payload = this.payloadOf(delivery);
    // The id is the event's: a receiver drops a delivery it has seen (a retry, or the same event after a failover).
    const signature = this.signer.sign(delivery.eventId, new Date(nowMs), payload);
    const deadline = AbortSignal.timeout(this.options.timeoutMs);
    try {
      const response = await fetch(delivery.receiver, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': this.options.userAgent,
          'webhook-id': delivery.eventId,
          'webhook-timestamp': String(Math.floor(nowMs / 1000)),
          'webhook-signature': signature,
        },
        body: payload,
        redirect: 'manual',
        signal:
          signal === undefined || typeof AbortSignal.any !== 'function'
            ? deadline
            : AbortSignal.any([deadline, signal]),
      });
      // The answer is read to its end within the deadline, so the connection can be reused; its content is not used.
      await response.arrayBuffer().catch(() => undefined);
      const delivered = response.status >= 200 && response.status < 300;
      return { delivered, status: response.status, error: null };
    } catch (error) {
      const reason = deadline.aborted ? `no answer within ${this.options.timeoutMs} ms` : describe(error);
      return { delivered: false, status: null, error: reason };
    }
  }
}

/** fetch's "fetch failed" hides the reason in `cause` (ECONNREFUSED, ENOTFOUND, ...). */
function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code !== undefined) return cause.code;
  if (cause?.message !== undefined) return cause.message;
  return (error as Error).message;
}
