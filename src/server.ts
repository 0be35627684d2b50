// serve(): opens the configured store, starts the app, and shuts down gracefully on SIGTERM/SIGINT.
import { join } from 'node:path';
import { buildApp, type App } from './app.js';
import { createCalendar } from './calendar.js';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { loadOrCreateSecret } from './identity.js';
import { lockDataDir } from './lockfile.js';
import type { RateLimiterStore } from './ratelimit/limiter.js';
import { SqliteStore } from './store/sqlite.js';
import type { Store, StoreOptions } from './store/store.js';

export const DATABASE_FILE = 'online-stats.sqlite';

export function storeOptions(config: Readonly<Config>): StoreOptions {
  return {
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    maxDays: config.maxDays,
    maxChannels: config.maxChannels,
    calendar: createCalendar(config.timeZone),
  };
}

/** Opens the store the configuration names, with its rate limiter store when it shares one. */
export async function openStore(config: Readonly<Config>, clock: Clock): Promise<{ store: Store; limiter?: RateLimiterStore }> {
  if (config.store === 'redis') {
    // Loaded only when asked for, so the embedded default never touches the Redis client.
    const { openRedis } = await import('./store/redis.js');
    return openRedis(config, storeOptions(config));
  }
  return { store: SqliteStore.open(join(config.dataDir, DATABASE_FILE), storeOptions(config), clock.nowMs()) };
}

export interface Running {
  app: App;
  /** Stops accepting, finishes in-flight requests, closes the store. */
  stop(): Promise<void>;
}

export async function serve(config: Readonly<Config>, clock: Clock = systemClock): Promise<Running> {
  const startedMs = performance.now();
  const identitySecret = loadOrCreateSecret(config.dataDir, config.identitySecret);
  const release = config.store === 'sqlite' ? lockDataDir(config.dataDir) : () => {};
  let opened: Awaited<ReturnType<typeof openStore>>;
  try {
    opened = await openStore(config, clock);
  } catch (error) {
    release();
    throw error;
  }
  const { store, limiter } = opened;
  const app = await buildApp({ config, store, clock, identitySecret, ...(limiter ? { limiter } : {}) });
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      app.deps.lifecycle.shuttingDown = true;
      const timer = setTimeout(() => {
        app.log.warn('in-flight requests did not finish in time; closing anyway');
        app.server.closeAllConnections();
      }, config.shutdownTimeoutMs);
      timer.unref();
      try {
        await app.close();
      } finally {
        clearTimeout(timer);
        await store.close();
        await limiter?.close?.();
        release();
      }
    })();
    return stopping;
  };
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    await store.close();
    release();
    throw error;
  }
  app.log.info({ store: store.kind, startupMs: Math.round(performance.now() - startedMs) }, 'online-stats ready');
  return { app, stop };
}

/** Runs until SIGTERM or SIGINT, then drains and exits 0 (1 if the drain failed). */
export async function serveUntilSignalled(config: Readonly<Config>): Promise<void> {
  const running = await serve(config);
  const onSignal = (signal: NodeJS.Signals) => {
    running.app.log.info({ signal }, 'shutting down');
    running.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        running.app.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}
