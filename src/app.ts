// buildApp(): assembles the Fastify app from injected config, store and clock: the request pipeline (http/), then the
// routes; no I/O at import.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import cors from '@fastify/cors';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { createCalendar, type Calendar } from './calendar.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { installBodyParser } from './http/body-parser.js';
import { installConnectionLimits } from './http/connection-limits.js';
import type { AppDeps } from './http/deps.js';
import { installErrorHandlers } from './http/error-handler.js';
import { createGuards } from './http/guards.js';
import { installRequestMetrics } from './http/request-metrics.js';
import { applyRouteConfig } from './http/route-config.js';
import { Pseudonymizer, clientIdentity } from './identity.js';
import { createMetrics } from './metrics.js';
import { openapiOptions } from './openapi.js';
import type { RateLimiterStore } from './ratelimit/limiter.js';
import { MemoryRateLimiterStore } from './ratelimit/memory.js';
import { analyticsRoutes } from './routes/analytics.js';
import { countRoutes } from './routes/counts.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { ingestRoutes } from './routes/ingest.js';
import { ErrorBody } from './routes/schemas.js';
import type { Store } from './store/store.js';
import { validatorCompiler } from './validation.js';

export type { AppDeps } from './http/deps.js';

export interface AppOptions {
  config: Readonly<Config>;
  store: Store;
  clock: Clock;
  /** The HMAC key of pseudonyms (see identity.ts). */
  identitySecret: string;
  /** The calendar the store was opened with; defaults to a new one in config.timeZone. */
  calendar?: Calendar;
  /** Defaults to an in-process store bounded by config.rateLimitMaxKeys. */
  limiter?: RateLimiterStore;
  /** Fastify's logger option; defaults to pino at config.logLevel. */
  logger?: FastifyServerOptions['logger'];
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
    // Node closes, with a 408, a connection that has not sent a whole request (headers and body) in time, one
    // that sends nothing included; it looks every connectionsCheckingInterval (30 s by default, too coarse).
    requestTimeout: config.requestTimeoutMs,
    http: {
      headersTimeout: config.requestTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, Math.ceil(config.requestTimeoutMs / 2)),
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  const pseudonymizer = new Pseudonymizer(options.identitySecret);
  const limiter = options.limiter ?? new MemoryRateLimiterStore(config.rateLimitMaxKeys);
  const metrics = createMetrics(() => store.countOnline(clock.nowMs()));
  installConnectionLimits(app.server, config, metrics);
  const deps: AppDeps = {
    config,
    store,
    clock,
    metrics,
    guards: createGuards(config, limiter, pseudonymizer, () => clock.nowMs()),
    lifecycle: { shuttingDown: false },
    calendar: options.calendar ?? createCalendar(config.timeZone),
    identityOfClient: (clientId) => pseudonymizer.pseudonym(clientIdentity(clientId)),
  };
  app.setValidatorCompiler(validatorCompiler);
  app.decorateRequest('caller', null);
  app.addSchema(ErrorBody);
  installBodyParser(app);
  installErrorHandlers(app);
  installRequestMetrics(app, metrics);
  applyRouteConfig(app, config, deps.guards);

  if (config.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: config.corsOrigins.includes('*') ? '*' : [...config.corsOrigins],
      methods: ['GET', 'POST'],
      allowedHeaders: ['content-type', 'authorization', 'x-client-id'],
      exposedHeaders: ['retry-after', 'ratelimit', 'ratelimit-policy'],
      maxAge: 600,
    });
  }

  await app.register(swagger, openapiOptions());
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(ingestRoutes, deps);
  await app.register(countRoutes, deps);
  await app.register(healthRoutes, deps);
  await app.register(analyticsRoutes, deps);
  await app.register(eventRoutes, deps);
  await app.register(dashboardRoutes, deps);

  if ('onCommit' in store)
    (store as { onCommit: AppDeps['metrics']['commit'] | null }).onCommit = (n, ms) => metrics.commit(n, ms);
  return Object.assign(app, { deps });
}
