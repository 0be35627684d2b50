// Placeholder until the Redis store lands: refuses clearly instead of starting half a service.
import type { Config } from '../config.js';
import { ConfigError } from '../errors.js';
import type { RateLimiterStore } from '../ratelimit/limiter.js';
import type { Store, StoreOptions } from './store.js';

export async function openRedis(_config: Readonly<Config>, _options: StoreOptions): Promise<{ store: Store; limiter?: RateLimiterStore }> {
  throw new ConfigError('--store / STORE', 'redis is not available in this build');
}
