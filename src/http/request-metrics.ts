// Every answered request counted by route, method and status, and refused heartbeats by reason.
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../metrics.js';

/** Routes are counted by their full URL, so under a host's prefix the routes below carry that prefix. */
export function installRequestMetrics(app: FastifyInstance, metrics: Metrics): void {
  const INGEST_ROUTES = new Set([`${app.prefix}/heartbeat`, `${app.prefix}/heartbeats`]);
  const LIVE_STREAM_ROUTE = `${app.prefix}/events`;
  // A callback hook, not an async one: it runs on every request, and an async hook costs a promise each time.
  app.addHook('onResponse', (request, reply, done) => {
    try {
      const route = request.routeOptions.url ?? 'unmatched';
      // A live stream is counted by its route when it starts: here it would count only once it ended.
      if (route !== LIVE_STREAM_ROUTE || request.method !== 'GET' || reply.statusCode !== 200) {
        metrics.request(route, request.method, reply.statusCode, reply.elapsedTime / 1000);
        if (reply.statusCode >= 400 && INGEST_ROUTES.has(route))
          metrics.heartbeatsRejected(rejectionReason(reply.statusCode));
      }
    } finally {
      done();
    }
  });
}

function rejectionReason(status: number): string {
  if (status === 429) return 'rate_limited';
  if (status === 401) return 'unauthorized';
  if (status === 413) return 'too_large';
  if (status === 415) return 'unsupported_media_type';
  if (status >= 500) return 'unavailable';
  return 'invalid';
}
