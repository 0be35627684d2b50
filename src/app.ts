// buildApp(): the Fastify app with its plugins and routes, from injected config, store and clock; no I/O at import.
import { STATUS_CODES } from 'node:http';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import cors from '@fastify/cors';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { serviceError } from './errors.js';
import { Pseudonymizer, identityOf } from './identity.js';
import { createMetrics, type Metrics } from './metrics.js';
import type { RateLimiterStore } from './ratelimit/limiter.js';
import { MemoryRateLimiterStore } from './ratelimit/memory.js';
import { countRoutes } from './routes/counts.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { createGuards, type Guards } from './routes/guards.js';
import { healthRoutes } from './routes/health.js';
import { ingestRoutes } from './routes/ingest.js';
import { ErrorBody } from './routes/schemas.js';
import type { Calendar, Store } from './store/store.js';
import { validatorCompiler } from './validation.js';
import { createCalendar } from './calendar.js';
import { analyticsRoutes } from './routes/analytics.js';
import { eventRoutes } from './routes/events.js';

export interface AppOptions {
  config: Readonly<Config>;
  store: Store;
  clock: Clock;
  /** The HMAC key of pseudonyms (see identity.ts). */
  identitySecret: string;
  /** Defaults to an in-process store bounded by config.rateLimitMaxKeys. */
  limiter?: RateLimiterStore;
  /** Fastify's logger option; defaults to pino at config.logLevel. */
  logger?: FastifyServerOptions['logger'];
}

/** What the routes are given. */
export interface AppDeps {
  config: Readonly<Config>;
  store: Store;
  clock: Clock;
  guards: Guards;
  metrics: Metrics;
  lifecycle: { shuttingDown: boolean };
  calendar: Calendar;
  /** The pseudonym of a client id (batch ingest). */
  identityOfClient(clientId: string): string;
}

export type App = FastifyInstance & { deps: AppDeps };

export async function buildApp(options: AppOptions): Promise<App> {
  const { config, store, clock } = options;
  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel },
    // Per-request log lines would cost more than the heartbeat itself; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: config.trustProxy.length > 0 ? [...config.trustProxy] : false,
    bodyLimit: 4096,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  }).withTypeProvider<TypeBoxTypeProvider>();

  const pseudonymizer = new Pseudonymizer(options.identitySecret);
  const limiter = options.limiter ?? new MemoryRateLimiterStore(config.rateLimitMaxKeys);
  const metrics = createMetrics(() => store.countOnline(clock.nowMs()));
  const deps: AppDeps = {
    config,
    store,
    clock,
    metrics,
    guards: createGuards(config, limiter, pseudonymizer, () => clock.nowMs()),
    lifecycle: { shuttingDown: false },
    calendar: createCalendar(config.timeZone),
    identityOfClient: (clientId) => pseudonymizer.pseudonym(identityOf(clientId, '')),
  };
  app.setValidatorCompiler(validatorCompiler);
  app.decorateRequest('caller', null);
  app.addSchema(ErrorBody);

  // JSON, and text/plain holding JSON (navigator.sendBeacon cannot set a JSON content type).
  // An empty body is no body: the demo's clients post nothing.
  const parseJson = (_request: FastifyRequest, body: string, done: (error: Error | null, value?: unknown) => void) => {
    if (body.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(body, (key, value) => (key === '__proto__' || key === 'constructor' ? undefined : value)));
    } catch (error) {
      done(serviceError('INVALID_JSON', (error as Error).message));
    }
  };
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser(['application/json', 'text/plain'], { parseAs: 'string' }, parseJson);

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string; validation?: unknown }, request, reply) => {
    const statusCode = error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    // A 503 is an expected state (store unreachable, shutting down): one line, not a stack per request.
    if (statusCode === 503) request.log.warn({ code: error.code, reason: error.message }, 'request refused: service unavailable');
    else if (statusCode >= 500) request.log.error({ err: error }, 'request failed');
    if (statusCode === 503) reply.header('retry-after', '1');
    const message = statusCode >= 500 && statusCode !== 503 ? 'internal error' : error.message;
    reply.status(statusCode).send({
      statusCode,
      code: error.code ?? (statusCode >= 500 ? 'OS_INTERNAL' : 'OS_BAD_REQUEST'),
      error: statusText(statusCode),
      message,
      detail: message,
    });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ statusCode: 404, code: 'OS_NOT_FOUND', error: 'Not Found', message: `no route ${request.method} ${request.url.split('?')[0]}` });
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.request(route, request.method, reply.statusCode, reply.elapsedTime / 1000);
    if (reply.statusCode >= 400 && (route === '/heartbeat' || route === '/heartbeats')) {
      metrics.heartbeatsRejected(rejectionReason(reply.statusCode));
    }
  });

  if (config.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: config.corsOrigins.includes('*') ? '*' : [...config.corsOrigins],
      methods: ['GET', 'POST'],
      allowedHeaders: ['content-type', 'authorization', 'x-client-id'],
      exposedHeaders: ['retry-after', 'ratelimit', 'ratelimit-policy'],
      maxAge: 600,
    });
  }

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'online-stats',
        version: '0.1.0',
        description: 'How many users are online now and how many were active over the last days.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(ingestRoutes, deps);
  await app.register(countRoutes, deps);
  await app.register(healthRoutes, deps);
  await app.register(analyticsRoutes, deps);
  await app.register(eventRoutes, deps);
  await app.register(dashboardRoutes, deps);
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['health'] } }, async (request, reply) => {
    deps.guards.requireToken(request);
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  if ('onCommit' in store) (store as { onCommit: Metrics['commit'] | null }).onCommit = (n, ms) => metrics.commit(n, ms);
  return Object.assign(app, { deps }) as unknown as App;
}

function rejectionReason(status: number): string {
  if (status === 429) return 'rate_limited';
  if (status === 401) return 'unauthorized';
  if (status === 413) return 'too_large';
  if (status === 415) return 'unsupported_media_type';
  if (status >= 500) return 'unavailable';
  return 'invalid';
}

function statusText(status: number): string {
  return STATUS_CODES[status] ?? (status >= 500 ? 'Server Error' : 'Client Error');
}
