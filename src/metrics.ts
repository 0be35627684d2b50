// Prometheus metrics of one app instance: its own registry, so several apps in one process (tests) never mix.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  heartbeatsAccepted(count: number): void;
  heartbeatsRejected(reason: string, count?: number): void;
  request(route: string, method: string, status: number, durationSeconds: number): void;
  commit(heartbeats: number, durationMs: number): void;
  connectionOpened(): void;
  connectionClosed(): void;
  /** A connection closed as soon as it was accepted: `total_limit` or `address_limit`. */
  connectionRefused(reason: ConnectionRefusal): void;
  /** Live /events streams open now. */
  liveStreams(open: number): void;
  /** An alert, record, occupancy or test event raised (once, whatever the number of receivers). */
  webhookEvent(type: string): void;
  /** An attempt at a webhook delivery came to this. */
  webhookAttempt(result: 'delivered' | 'failed' | 'retried'): void;
}

export type ConnectionRefusal = 'total_limit' | 'address_limit';

/** What the gauges read when scraped. */
export interface MetricsReaders {
  countOnline(): Promise<number>;
  /** Today's and the all-time peak of the total. */
  peaks(): Promise<{ today: number; allTime: number }>;
  /** Whether this instance settles the history (see Store.leads). */
  leads(): boolean;
  /** The webhook outbox: deliveries pending, and pending ones dropped past its bound. */
  outbox(): Promise<{ pending: number; dropped: number }>;
}

export function createMetrics(readers: MetricsReaders, defaults = true): Metrics {
  const registry = new Registry();
  if (defaults) collectDefaultMetrics({ register: registry, prefix: 'online_stats_process_' });
  const accepted = new Counter({
    name: 'online_stats_heartbeats_accepted_total',
    help: 'Heartbeats recorded',
    registers: [registry],
  });
  const rejected = new Counter({
    name: 'online_stats_heartbeats_rejected_total',
    help: 'Heartbeats refused (or, for channel_limit, recorded without their channel), by reason',
    labelNames: ['reason'],
    registers: [registry],
  });
  const requests = new Counter({
    name: 'online_stats_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['route', 'method', 'status'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'online_stats_http_request_duration_seconds',
    help: 'HTTP request latency by route',
    labelNames: ['route'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const batchSize = new Histogram({
    name: 'online_stats_store_commit_heartbeats',
    help: 'Heartbeats per store commit (group commit batch size)',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 20000],
    registers: [registry],
  });
  const commitSeconds = new Histogram({
    name: 'online_stats_store_commit_duration_seconds',
    help: 'Store commit duration, fsync included',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [registry],
  });
  const connectionsOpen = new Gauge({
    name: 'online_stats_http_connections_open',
    help: 'HTTP connections open now',
    registers: [registry],
  });
  const connectionsRefused = new Counter({
    name: 'online_stats_http_connections_refused_total',
    help: 'Connections closed as soon as they were accepted, by the cap they hit (total_limit, address_limit)',
    labelNames: ['reason'],
    registers: [registry],
  });
  const streams = new Gauge({
    name: 'online_stats_live_streams',
    help: 'Live /events streams open now',
    registers: [registry],
  });
  new Gauge({
    name: 'online_stats_online_clients',
    help: 'Identities online now',
    registers: [registry],
    async collect() {
      this.set(await readers.countOnline());
    },
  });
  new Gauge({
    name: 'online_stats_online_peak',
    help: 'Highest online count (exact): today in the configured time zone, and ever',
    labelNames: ['period'],
    registers: [registry],
    async collect() {
      const figures = await readers.peaks();
      this.set({ period: 'today' }, figures.today);
      this.set({ period: 'all_time' }, figures.allTime);
    },
  });
  new Gauge({
    name: 'online_stats_leader',
    help: 'Whether this instance settles the history for the deployment (1), or another one does (0)',
    registers: [registry],
    collect() {
      this.set(readers.leads() ? 1 : 0);
    },
  });
  const webhookEvents = new Counter({
    name: 'online_stats_webhook_events_total',
    help: 'Events raised for webhooks, by type (alert.firing, alert.resolved, peak.record, channel.*, webhook.test)',
    labelNames: ['type'],
    registers: [registry],
  });
  const webhookAttempts = new Counter({
    name: 'online_stats_webhook_deliveries_total',
    help: 'Attempts at webhook deliveries, by result: delivered, retried (to be attempted again), failed (given up)',
    labelNames: ['result'],
    registers: [registry],
  });
  new Gauge({
    name: 'online_stats_webhook_outbox_pending',
    help: 'Webhook deliveries waiting in the outbox (all instances, on Redis)',
    registers: [registry],
    async collect() {
      this.set((await readers.outbox()).pending);
    },
  });
  new Counter({
    name: 'online_stats_webhook_outbox_dropped_total',
    help: 'Pending webhook deliveries dropped because the outbox was full (--webhook-outbox-max), by this process',
    registers: [registry],
    async collect() {
      this.reset();
      this.inc((await readers.outbox()).dropped);
    },
  });
  return {
    registry,
    webhookEvent: (type) => webhookEvents.inc({ type }),
    webhookAttempt: (result) => webhookAttempts.inc({ result }),
    heartbeatsAccepted: (count) => accepted.inc(count),
    heartbeatsRejected: (reason, count = 1) => rejected.inc({ reason }, count),
    request(route, method, status, durationSeconds) {
      requests.inc({ route, method, status });
      latency.observe({ route }, durationSeconds);
    },
    commit(heartbeats, durationMs) {
      batchSize.observe(heartbeats);
      commitSeconds.observe(durationMs / 1000);
    },
    connectionOpened: () => connectionsOpen.inc(),
    connectionClosed: () => connectionsOpen.dec(),
    connectionRefused: (reason) => connectionsRefused.inc({ reason }),
    liveStreams: (open) => streams.set(open),
  };
}
