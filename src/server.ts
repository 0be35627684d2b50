// serve(): opens the configured store, starts the app, and shuts down gracefully on SIGTERM/SIGINT.
import { readFileSync } from 'node:fs';
import { buildApp, type App } from './app.js';
import { createCalendar } from './calendar.js';
import { systemClock, type Clock } from './clock.js';
import { flagOf, type Config } from './config.js';
import { loadOrCreateSecret } from './identity.js';
import { lockDataDir } from './lockfile.js';
import { openStore, type OpenedStore } from './open-store.js';

/** Descriptors kept for what is not a client connection: the database and its WAL, Redis, stdio, Node's own. */
const RESERVED_DESCRIPTORS = 100;

/** The soft limit on open files of this process (Linux); null where it cannot be read or is unlimited. */
function openFilesLimit(): number | null {
  try {
    const match = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
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
  // One calendar for the app: the store's days and the routes' days are the same days.
  const calendar = createCalendar(config.timeZone);
  let opened: OpenedStore;
  try {
    opened = await openStore(config, calendar, clock, identitySecret);
  } catch (error) {
    release();
    throw error;
  }
  const { store, limiter } = opened;
  const app = await buildApp({ config, store, clock, calendar, identitySecret, ...(limiter ? { limiter } : {}) });
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
        await opened.close();
        release();
      }
    })();
    return stopping;
  };
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    await opened.close();
    release();
    throw error;
  }
  const openFiles = openFilesLimit();
  if (openFiles !== null && config.maxConnections > openFiles - RESERVED_DESCRIPTORS) {
    app.log.warn(
      { maxConnections: config.maxConnections, openFilesLimit: openFiles },
      `${flagOf('maxConnections')} is not below the open-files limit less ${RESERVED_DESCRIPTORS}: when descriptors run out, ` +
        'new connections fail instead of being refused; lower it, or raise the limit (ulimit -n, LimitNOFILE)',
    );
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
