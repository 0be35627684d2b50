// serve(): opens the configured store, starts the app, and shuts down gracefully on SIGTERM/SIGINT.
import { buildApp, type App } from './app.js';
import { createCalendar } from './calendar.js';
import { systemClock, type Clock } from './clock.js';
import { flagOf, type Config } from './config.js';
import { ConfigError, StoreUnavailableError } from './errors.js';
import { loadOrCreateSecret } from './identity.js';
import { lockDataDir } from './lockfile.js';
import { openStore, type OpenedStore } from './open-store.js';

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
      // The store is closed and the lock released whatever fails before; the first real failure is reported after.
      let failure: Error | null = null;
      try {
        await app.close();
      } catch (error) {
        failure = error as Error;
      }
      clearTimeout(timer);
      try {
        await opened.close();
      } catch (error) {
        // A full disk (or Redis gone) at the last save is a state, not a bug: what was acknowledged is committed.
        if (error instanceof StoreUnavailableError)
          app.log.warn(
            { reason: error.message },
            'the store closed without its final save; every acknowledged heartbeat was committed before',
          );
        else failure ??= error as Error;
      }
      release();
      if (failure !== null) throw failure;
    })();
    return stopping;
  };
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    await opened.close().catch(() => {}); // the listen error is the one to report
    release();
    throw listenError(config, error);
  }
  app.log.info({ store: store.kind, startupMs: Math.round(performance.now() - startedMs) }, 'online-stats ready');
  return { app, stop };
}

/** The address cannot be listened on: a setting to change (exit 2), said in one line. */
function listenError(config: Readonly<Config>, error: unknown): unknown {
  const where = `${config.host}:${config.port}`;
  switch ((error as NodeJS.ErrnoException).code) {
    case 'EADDRINUSE':
      return new ConfigError(flagOf('port'), `${where} is in use by another process: stop it, or choose another port`);
    case 'EACCES':
      return new ConfigError(flagOf('port'), `not allowed to listen on ${where}: ports below 1024 need privileges`);
    case 'EADDRNOTAVAIL':
      return new ConfigError(flagOf('host'), `${config.host} is not an address of this machine`);
    default:
      return error;
  }
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
