// serve(): opens the configured store, starts the app, and shuts down gracefully on SIGTERM/SIGINT.
import { readFileSync } from 'node:fs';
import { buildApp, type App } from './app.js';
import { createCalendar } from './calendar.js';
import { systemClock, type Clock } from './clock.js';
import { flagOf, startedByNpmExec, type Config } from './config.js';
import { ConfigError, StoreUnavailableError } from './errors.js';
import { loadOrCreateSecret } from './identity.js';
import { openStoreLocked } from './open-store.js';

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
  /** Stops accepting, finishes in-flight requests (at most config.shutdownTimeoutMs), closes the store. */
  stop(): Promise<void>;
  /**
   * stop(), without waiting for in-flight requests: every connection is closed now. A request not
   * answered was not acknowledged, and heartbeats already handed to the store are committed when it
   * closes, so nothing acknowledged is lost. Resolves when stop() does.
   */
  stopNow(): Promise<void>;
}

export async function serve(config: Readonly<Config>, clock: Clock = systemClock): Promise<Running> {
  const startedMs = performance.now();
  const identitySecret = loadOrCreateSecret(config.dataDir, config.identitySecret);
  // One calendar for the app: the store's days and the routes' days are the same days.
  const calendar = createCalendar(config.timeZone);
  // On SQLite, closing it also releases the data directory's lock.
  const opened = await openStoreLocked(config, calendar, clock, identitySecret);
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
      // The store is closed (and the lock released) whatever fails before; the first real failure is reported after.
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
      if (failure !== null) throw failure;
    })();
    return stopping;
  };
  const stopNow = (): Promise<void> => {
    const stopped = stop();
    app.server.closeAllConnections();
    return stopped;
  };
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    await opened.close().catch(() => {}); // the listen error is the one to report
    throw listenError(config, error);
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
  return { app, stop, stopNow };
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

/**
 * Runs until SIGTERM or SIGINT, then drains and exits 0 (1 if the drain failed). A second signal
 * during the drain closes every connection at once instead of waiting out --shutdown-timeout (a
 * half-sent request would hold it to the end), and still closes the store and exits 0.
 */
export async function serveUntilSignalled(config: Readonly<Config>): Promise<void> {
  let running: Running | null = null;
  const received: NodeJS.Signals[] = [];
  const onSignal = (signal: NodeJS.Signals) => {
    received.push(signal);
    if (running !== null) onStopSignal(running, signal, received.length);
  };
  // In place before start-up, and with on, not once: without a listener a signal kills the process on the spot
  // (exit 143), whether it comes while the service starts or during the drain.
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    running = await serve(config);
  } catch (error) {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    throw error;
  }
  // Signals that came while the service started are answered now that it can drain.
  for (const [index, signal] of received.entries()) onStopSignal(running, signal, index + 1);
  // npx and `npm exec` run the command through `sh -c`, and where /bin/sh is dash (Debian, Ubuntu) that shell stays
  // between npm and the service: npm passes SIGTERM on to the shell, which dies of it without passing it on, and the
  // service was left running, orphaned, holding its port and its data directory. Under npm exec, the service stops
  // as on SIGTERM once the process that started it is gone.
  if (startedByNpmExec()) {
    const service = running;
    whenParentExits(() => {
      service.app.log.info('the npm exec (npx) that started the service has exited');
      onSignal('SIGTERM');
    });
  }
}

/** How often the service under npm exec looks whether its parent is still there. */
const PARENT_CHECK_MS = 250;

/** Calls `then` once the parent process has exited (this one is then adopted by another, and its parent id changes). */
function whenParentExits(then: () => void): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    then();
  }, PARENT_CHECK_MS);
  timer.unref();
}

/** The first signal drains; any later one finishes the drain at once. */
function onStopSignal(running: Running, signal: NodeJS.Signals, nth: number): void {
  if (nth > 1) {
    running.app.log.warn({ signal }, 'second signal: closing every connection now');
    // The same promise as the first signal's stop(), whose handlers below exit.
    void running.stopNow();
    return;
  }
  running.app.log.info({ signal }, 'shutting down');
  running.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      running.app.log.error({ err: error }, 'shutdown failed');
      process.exit(1);
    },
  );
}
