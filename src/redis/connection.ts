// The Redis connection shared by the store and the limiter: standalone or Cluster (detected), failing fast instead of
// queueing.
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { flagOf } from '../config.js';
import { ConfigError, StoreUnavailableError } from '../errors.js';

/** Longest a command may wait for Redis before the request is answered 503, in ms. */
export const REDIS_COMMAND_TIMEOUT_MS = 500;
/** Longest any store operation takes before failing, whatever Redis does (503 within 1 s), in ms. */
export const REDIS_DEADLINE_MS = 900;
/** Longest the start waits for a first connection, in ms. */
const CONNECT_WAIT_MS = 5000;

export type RedisClient = Redis | Cluster;

/** True for failures that mean Redis cannot serve now (503), false for a bug (a script error: 500). */
function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return true;
  if (error.name !== 'ReplyError') return true;
  return /^(CLUSTERDOWN|LOADING|MASTERDOWN|READONLY|TRYAGAIN|BUSY|OOM|MISCONF|NOREPLICAS|MOVED|ASK)\b/.test(
    error.message,
  );
}

function unavailable(error: unknown): unknown {
  if (error instanceof StoreUnavailableError || !isUnavailable(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  // ioredis says this when a command is refused because there is no connection (no offline queue).
  const detail = message.includes('enableOfflineQueue') ? 'not connected to redis' : `redis: ${message}`;
  return new StoreUnavailableError(detail, { cause: error });
}

/**
 * Fails fast rather than queueing: no offline queue (a command while disconnected fails at once), a
 * command timeout, no resending after a reconnect; reconnects forever in the background, so the
 * service recovers on its own once Redis is back.
 */
const COMMON_OPTIONS: RedisOptions = {
  enableOfflineQueue: false,
  enableAutoPipelining: true,
  autoResendUnfulfilledCommands: false,
  commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
  connectTimeout: 2000,
  // A dropped connection to a server that does not answer is destroyed this soon (ms), failing the
  // commands still waiting on it, rather than after ioredis's default 2 s.
  disconnectTimeout: 200,
  maxRetriesPerRequest: 0,
  retryStrategy: (attempt: number) => Math.min(100 * attempt, 1000),
};

function parseRedisUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new ConfigError(flagOf('redisUrl'), `not a URL: ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError(flagOf('redisUrl'), `expected redis:// or rediss://, got ${url.protocol}//`);
  }
  return url;
}

function authOf(url: URL): Pick<RedisOptions, 'username' | 'password' | 'tls'> {
  return {
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

async function waitReady(client: RedisClient, what: string): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new StoreUnavailableError(
          `cannot reach redis at ${what} within ${CONNECT_WAIT_MS} ms${lastError ? ` (${lastError.message})` : ''}; ` +
            `start it, or correct ${flagOf('redisUrl')}`,
        ),
      );
    }, CONNECT_WAIT_MS);
    let lastError: Error | null = null;
    const onError = (error: Error) => (lastError = error);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('error', onError);
    };
    client.on('ready', onReady);
    client.on('error', onError);
  });
}

/**
 * One connection (standalone or Cluster) shared by the store and the limiter. Every operation goes
 * through `run`: a hard deadline, connection failures mapped to StoreUnavailableError (503), and,
 * after a timeout, a fresh connection, so commands stuck behind a stalled server are failed and
 * dropped rather than piling up in the client while the server does not answer.
 */
export class RedisConnection {
  private lost = false;
  private lastResetMs = -Infinity;

  constructor(
    readonly client: RedisClient,
    /** The servers, for messages (no credentials). */
    readonly shown: string,
  ) {
    client.on('error', (error: Error) => this.markLost(error.message));
    client.on('ready', () => {
      if (!this.lost) return;
      this.lost = false;
      process.stderr.write(`online-stats: redis at ${shown} is back\n`);
    });
  }

  async run<T>(operation: (client: RedisClient) => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new StoreUnavailableError(`redis did not answer within ${REDIS_DEADLINE_MS} ms`)),
        REDIS_DEADLINE_MS,
      );
    });
    try {
      return await Promise.race([operation(this.client), deadline]);
    } catch (error) {
      if (error instanceof StoreUnavailableError || (error instanceof Error && /timed out/i.test(error.message)))
        this.reset(error.message);
      throw unavailable(error);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Drops the connection and its queue of unanswered commands, and connects again (at most once a second). */
  private reset(why: string): void {
    const nowMs = performance.now();
    if (nowMs - this.lastResetMs < 1000) return;
    this.lastResetMs = nowMs;
    this.markLost(why);
    this.client.disconnect(true);
  }

  /** One line on stderr when the connection is lost and one when it is back, not one per failed attempt. */
  private markLost(why: string): void {
    if (this.lost) return;
    this.lost = true;
    process.stderr.write(`online-stats: redis at ${this.shown} unavailable (${why}); answering 503 until it is back\n`);
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}

/**
 * Connects to the first URL; if that server is a Cluster node, reconnects as a Cluster client seeded with every URL.
 */
export async function connectRedis(urlList: string): Promise<RedisConnection> {
  const urls = urlList
    .split(',')
    .filter((part) => part.trim() !== '')
    .map(parseRedisUrl);
  const first = urls[0];
  if (!first) throw new ConfigError(flagOf('redisUrl'), 'is empty');
  const shown = urls.map((url) => `${url.protocol}//${url.host}`).join(',');
  const standalone = new Redis(first.toString(), COMMON_OPTIONS);
  standalone.on('error', () => {});
  try {
    await waitReady(standalone, shown);
    const info = String(await standalone.call('INFO', ['cluster']));
    if (!/cluster_enabled:1/.test(info)) return new RedisConnection(standalone, shown);
  } catch (error) {
    standalone.disconnect();
    throw error;
  }
  standalone.disconnect();
  const { retryStrategy: _unused, enableOfflineQueue: _offline, ...nodeOptions } = COMMON_OPTIONS;
  const clusterOptions: ClusterOptions = {
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    clusterRetryStrategy: (attempt: number) => Math.min(100 * attempt, 1000),
    retryDelayOnClusterDown: 100,
    retryDelayOnFailover: 100,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: 1000,
    redisOptions: { ...nodeOptions, ...authOf(first) },
  };
  const cluster = new Cluster(
    urls.map((url) => ({ host: url.hostname, port: Number(url.port || 6379) })),
    clusterOptions,
  );
  cluster.on('error', () => {});
  try {
    await waitReady(cluster, shown);
  } catch (error) {
    cluster.disconnect();
    throw error;
  }
  return new RedisConnection(cluster, shown);
}
