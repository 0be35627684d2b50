// The settings that shape the data in Redis (shards, time zone, identity secret) must agree on every instance: checked
// at start.
import { flagOf, type Config } from '../config.js';
import { ConfigError } from '../errors.js';
import { connectRedis, type RedisConnection } from './connection.js';
import type { RedisKeys } from './keys.js';

/** What this instance would write; each is compared with what the first instance stored. */
export interface DeploymentSettings {
  timeZone: string;
  /** A fingerprint of the identity secret (see `secretFingerprint`); none: not compared. */
  secretFingerprint?: string;
}

/** The meta field of each compared setting, and the setting a mismatch is reported against. */
const COMPARED: Record<string, keyof Config> = {
  shards: 'redisShards',
  timeZone: 'timeZone',
  secret: 'identitySecret',
};

/**
 * The first instance writes the settings, the others compare, and an instance that disagrees
 * refuses to start (ConfigError, exit 2) rather than counting one user as several or misplacing days.
 */
export async function checkDeployment(
  redis: RedisConnection,
  keys: RedisKeys,
  settings: DeploymentSettings,
): Promise<void> {
  const wanted: Record<string, string> = { shards: String(keys.shards), timeZone: settings.timeZone };
  if (settings.secretFingerprint !== undefined) wanted.secret = settings.secretFingerprint;
  const names = Object.keys(wanted);
  const stored = (await redis.run(async (client) => {
    for (const name of names) await client.call('HSETNX', [keys.meta(), name, wanted[name] as string]);
    return client.call('HMGET', [keys.meta(), ...names]);
  })) as (string | null)[];
  names.forEach((name, i) => {
    const value = stored[i];
    if (value === null || value === undefined || value === wanted[name]) return;
    const shown = name === 'secret' ? 'a different secret' : JSON.stringify(value);
    const setting = COMPARED[name];
    throw new ConfigError(
      setting === undefined ? name : flagOf(setting),
      `the data under redis prefix ${JSON.stringify(keys.prefix)} was written with ${shown}; ` +
        `every instance must use the same value (or another ${flagOf('redisPrefix')})`,
    );
  });
}

/** Connects to `url` (standalone or Cluster, detected) and checks the deployment; closes it again on failure. */
export async function connectDeployment(
  url: string,
  keys: RedisKeys,
  settings: DeploymentSettings,
): Promise<RedisConnection> {
  const redis = await connectRedis(url);
  try {
    await checkDeployment(redis, keys, settings);
  } catch (error) {
    redis.client.disconnect();
    throw error;
  }
  return redis;
}
