// Opens the store the configuration names, and on Redis the shared rate limiter on the same connection: the one place
// that turns Config into store settings.
import { createCalendar, type Calendar } from './calendar.js';
import type { Clock } from './clock.js';
import { flagOf, type Config } from './config.js';
import { ConfigError } from './errors.js';
import { secretFingerprint } from './identity.js';
import { lockDataDir } from './lockfile.js';
import type { RateLimiterStore } from './ratelimit/limiter.js';
import { SqliteStore, databasePath } from './store/sqlite.js';
import type { Store, StoreOptions } from './store/store.js';

/** The store's settings; pass the app's calendar so the store and the routes share one. */
export function storeOptions(
  config: Readonly<Config>,
  calendar: Calendar = createCalendar(config.timeZone),
): StoreOptions {
  return {
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    maxDays: config.maxDays,
    retentionDays: config.retentionDays,
    maxChannels: config.maxChannels,
    calendar,
    historyMinuteDays: Math.min(config.historyMinuteDays, config.maxDays),
    outboxMax: config.webhookOutboxMax,
  };
}

export interface OpenedStore {
  store: Store;
  /** The limiter store that must be shared by every instance (Redis); none: the app keeps its own in memory. */
  limiter?: RateLimiterStore;
  /** Closes the store (finishing its writes), then what it was opened on. */
  close(): Promise<void>;
}

/** `identitySecret`: the key in use (configured or from the data directory), whose fingerprint the data must match. */
export async function openStore(
  config: Readonly<Config>,
  calendar: Calendar,
  clock: Clock,
  identitySecret: string,
): Promise<OpenedStore> {
  const options = storeOptions(config, calendar);
  if (config.store === 'redis') return openRedis(config, options);
  const store = SqliteStore.open(databasePath(config.dataDir), options, clock.nowMs(), {
    secretFingerprint: secretFingerprint(identitySecret),
    maxDatabaseBytes: config.maxDatabaseBytes,
  });
  return { store, close: () => store.close() };
}

/**
 * openStore(), holding the data directory's lock first on SQLite (one process per data directory): released when the
 * store fails to open, and by close() once the store is closed.
 */
export async function openStoreLocked(
  config: Readonly<Config>,
  calendar: Calendar,
  clock: Clock,
  identitySecret: string,
): Promise<OpenedStore> {
  const release = config.store === 'sqlite' ? lockDataDir(config.dataDir) : () => {};
  let opened: OpenedStore;
  try {
    opened = await openStore(config, calendar, clock, identitySecret);
  } catch (error) {
    release();
    throw error;
  }
  return {
    ...opened,
    async close() {
      try {
        await opened.close();
      } finally {
        release();
      }
    },
  };
}

/**
 * One connection, checked once against the deployment's settings, carries both the store and the
 * limiter (as a broker and a presence manager share one in centrifuge); neither knows the other.
 */
async function openRedis(config: Readonly<Config>, options: StoreOptions): Promise<OpenedStore> {
  if (config.redisUrl === null) throw new ConfigError(flagOf('redisUrl'), 'is required with --store redis');
  if (config.identitySecret === null) throw new ConfigError(flagOf('identitySecret'), 'is required with --store redis');
  // Loaded only when asked for, so the embedded default never loads the Redis client.
  const [{ connectDeployment }, { RedisKeys }, { RedisStore }, { RedisRateLimiterStore }] = await Promise.all([
    import('./redis/deployment.js'),
    import('./redis/keys.js'),
    import('./store/redis.js'),
    import('./ratelimit/redis.js'),
  ]);
  const keys = new RedisKeys(config.redisPrefix ?? '', config.redisShards);
  const redis = await connectDeployment(config.redisUrl, keys, {
    timeZone: options.calendar.timeZone,
    secretFingerprint: secretFingerprint(config.identitySecret),
  });
  const store = new RedisStore(redis, keys, options);
  return {
    store,
    limiter: new RedisRateLimiterStore(redis, keys),
    async close() {
      try {
        await store.close();
      } finally {
        await redis.close();
      }
    },
  };
}
