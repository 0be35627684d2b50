// The service as a Fastify plugin: `host.register(onlineStats, { store, prefix })` adds its routes to an existing app,
// each of its parsers, hooks and handlers kept inside its own encapsulated context.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import cors from '@fastify/cors';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { AlertObserver } from './alerts/observer.js';
import { createCalendar, type Calendar } from './calendar.js';
import { systemClock, type Clock } from './clock.js';
import { defaultConfig, flagOf, type Config, type ConfigOverrides } from './config.js';
import { ConfigError } from './errors.js';
import { installBodyParser } from './http/body-parser.js';
import type { AppDeps } from './http/deps.js';
import { installErrorHandlers } from './http/error-handler.js';
import { createGuards } from './http/guards.js';
import { installRequestMetrics } from './http/request-metrics.js';
import { applyRouteConfig } from './http/route-config.js';
import { Pseudonymizer, clientIdentity, loadOrCreateSecret } from './identity.js';
import { createMetrics } from './metrics.js';
import { Peak, dayAndRecord, historyRoutes } from './routes/history.js';
import { openapiOptions } from './openapi.js';
import { openStoreLocked } from './open-store.js';
import type { RateLimiterStore } from './ratelimit/limiter.js';
import { MemoryRateLimiterStore } from './ratelimit/memory.js';
import { analyticsRoutes } from './routes/analytics.js';
import { countRoutes } from './routes/counts.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { ingestRoutes } from './routes/ingest.js';
import { presenceRoutes } from './routes/presence.js';
import { webhookRoutes } from './routes/webhooks.js';
import { ErrorBody } from './routes/schemas.js';
import type { Store } from './store/store.js';
import { validatorCompiler } from './validation.js';
import { WebhookDeliverer } from './webhooks/deliverer.js';
import { WebhookSender } from './webhooks/sender.js';

/** What the service is made of; buildApp() and the plugin both assemble it with createDeps(). */
export interface DepsOptions {
  config: Readonly<Config>;
  store: Store;
  clock: Clock;
  /** The HMAC key of pseudonyms (see identity.ts). */
  identitySecret: string;
  /** The calendar the store was opened with; defaults to a new one in config.timeZone. */
  calendar?: Calendar;
  /** Defaults to an in-process store bounded by config.rateLimitMaxKeys. */
  limiter?: RateLimiterStore;
}

export function createDeps(options: DepsOptions): AppDeps {
  const { config, store, clock } = options;
  const pseudonymizer = new Pseudonymizer(options.identitySecret);
  const limiter = options.limiter ?? new MemoryRateLimiterStore(config.rateLimitMaxKeys);
  const calendar = options.calendar ?? createCalendar(config.timeZone);
  const metrics = createMetrics({
    countOnline: () => store.countOnline(clock.nowMs()),
    async peaks() {
      const peaks = await dayAndRecord(store, calendar, null, clock.nowMs());
      return { today: peaks.today.online, allTime: peaks.all_time.online };
    },
    leads: () => store.leads(),
    outbox: () => store.outbox.depth(),
  });
  const alerts =
    config.webhookUrls.length === 0
      ? null
      : new AlertObserver(
          {
            rules: config.alerts,
            channelEvents: config.channelEvents === 'on',
            channelVacateDelayMs: config.channelVacateDelayMs,
            recordCooldownMs: config.recordCooldownMs,
            recordChannels: config.recordChannels === 'on',
          },
          config.webhookUrls,
          (type) => metrics.webhookEvent(type),
        );
  return {
    config,
    store,
    clock,
    metrics,
    alerts,
    guards: createGuards(config, limiter, pseudonymizer, () => clock.nowMs()),
    lifecycle: { shuttingDown: false },
    calendar,
    identityOfClient: (clientId) => pseudonymizer.pseudonym(clientIdentity(clientId)),
  };
}

/**
 * Installs the request pipeline and the routes into `app`, at its prefix. Everything here is
 * encapsulated by Fastify (parsers, hooks, error handler, decorators, schemas), so in a host app it
 * reaches only these routes. `notFound`: answer unknown URLs here in the service's error shape (the
 * whole server when standalone; only under the prefix when embedded).
 */
export async function installService(app: FastifyInstance, deps: AppDeps, notFound: boolean): Promise<void> {
  const { config, store, metrics } = deps;
  app.setValidatorCompiler(validatorCompiler);
  app.decorateRequest('caller', null);
  app.decorateRequest('clientAddress', null);
  app.addSchema(ErrorBody);
  app.addSchema(Peak);
  installBodyParser(app);
  installErrorHandlers(app, notFound);
  installRequestMetrics(app, metrics);
  applyRouteConfig(app, config, deps.guards);
  // Readiness answers 503 from the moment the server starts to close, however it was asked to.
  app.addHook('preClose', async () => {
    deps.lifecycle.shuttingDown = true;
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

  // A host that documents its own API with @fastify/swagger lists these routes in its document instead.
  if (!app.hasDecorator('swagger')) {
    await app.register(swagger, openapiOptions());
    await app.register(swaggerUi, { routePrefix: '/docs' });
    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  }

  await app.register(ingestRoutes, deps);
  await app.register(countRoutes, deps);
  await app.register(healthRoutes, deps);
  await app.register(analyticsRoutes, deps);
  await app.register(historyRoutes, deps);
  await app.register(eventRoutes, deps);
  await app.register(dashboardRoutes, deps);
  await app.register(webhookRoutes, deps);
  await app.register(presenceRoutes, deps);
  if (deps.alerts !== null) await startAlerts(app, deps, deps.alerts);

  if ('onCommit' in store)
    (store as { onCommit: AppDeps['metrics']['commit'] | null }).onCommit = (n, ms) => metrics.commit(n, ms);
}

/** Longest one webhook attempt may take. */
const WEBHOOK_TIMEOUT_MS = 10_000;

/** The rules watch the store's counts; what they raise is delivered from the outbox, off the heartbeat path. */
async function startAlerts(app: FastifyInstance, deps: AppDeps, alerts: AlertObserver): Promise<void> {
  const { config, store, clock, metrics } = deps;
  await store.observe(alerts, clock.nowMs());
  const deliverer = new WebhookDeliverer({
    outbox: store.outbox,
    sender: new WebhookSender({
      secret: config.webhookSecret as string,
      format: config.webhookFormat,
      timeoutMs: WEBHOOK_TIMEOUT_MS,
      userAgent: 'online-stats (webhooks)',
    }),
    clock,
    retryForMs: config.webhookRetryForMs,
    onAttempt: (result) => metrics.webhookAttempt(result),
    onError: (error) => app.log.warn({ err: error }, 'webhook deliveries not attempted'),
  });
  deliverer.start();
  // Before the store closes: an attempt under way is abandoned, and stays pending for the next start.
  app.addHook('preClose', async () => {
    await deliverer.stop();
  });
}

export interface OnlineStatsOptions {
  /**
   * Settings, as the defaults of `online-stats serve` with these fields changed. A host's Fastify
   * options stay the host's: trust of proxies, connection caps and timeouts are its own. A field
   * that is undefined keeps its default.
   */
  config?: ConfigOverrides;
  /**
   * A store the host opened and closes (see openStore()). Without one, the plugin opens the store
   * the config names (the embedded one in config.dataDir by default) and closes it when the host closes.
   */
  store?: Store;
  /** The HMAC key of pseudonyms; defaults to config.identitySecret, then to the key kept in config.dataDir. */
  identitySecret?: string;
  clock?: Clock;
  /** The rate limiter's store (openStore() gives Redis's, shared by every instance); defaults to one in memory. */
  limiter?: RateLimiterStore;
}

/**
 * The service as a plugin of a host app, at the host's chosen prefix:
 *
 *   await host.register(onlineStats, { prefix: '/stats', config: { dataDir: './data' } });
 *
 * Not wrapped in fastify-plugin on purpose: its parsers, error handler and hooks must not leak into
 * the host's routes.
 */
export const onlineStats: FastifyPluginAsync<OnlineStatsOptions> = async (app, options) => {
  const config = defaultConfig(options.config);
  const clock = options.clock ?? systemClock;
  const calendar = createCalendar(config.timeZone);
  let { store, limiter } = options;
  let identitySecret = options.identitySecret ?? config.identitySecret;
  if (store === undefined) {
    // As `serve` does: the configured store (Redis needs config.redisUrl and config.identitySecret), and one process
    // per embedded data directory.
    identitySecret ??= loadOrCreateSecret(config.dataDir, null);
    const opened = await openStoreLocked(config, calendar, clock, identitySecret);
    store = opened.store;
    limiter ??= opened.limiter;
    app.addHook('onClose', () => opened.close());
  } else if (identitySecret === null) {
    throw new ConfigError(
      flagOf('identitySecret'),
      'is required with a store of your own: the key its pseudonyms were made with',
    );
  }
  const deps = createDeps({
    config,
    store,
    clock,
    calendar,
    identitySecret,
    ...(limiter ? { limiter } : {}),
  });
  await installService(app, deps, app.prefix !== '');
};
