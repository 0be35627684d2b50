// `online-stats import`: migrates the FastAPI demo's users_data.json into the embedded store.
import { readFileSync } from 'node:fs';
import ipaddr from 'ipaddr.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { ImportError } from './errors.js';
import { Pseudonymizer, addressIdentity, loadOrCreateSecret, normalizeAddress, secretFingerprint } from './identity.js';
import { lockDataDir } from './lockfile.js';
import { storeOptions } from './open-store.js';
import { SqliteStore, databasePath } from './store/sqlite.js';

// The demo wrote datetime.utcnow().isoformat(): no zone (UTC meant), microseconds.
const ISO = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$/;

export function parseDemoTime(text: string): number | null {
  const match = ISO.exec(text);
  if (!match) return null;
  const fraction = (match[3] ?? '').padEnd(3, '0').slice(0, 3);
  const ms = Date.parse(`${match[1]}T${match[2]}.${fraction}${match[4] ?? 'Z'}`);
  return Number.isNaN(ms) ? null : ms;
}

/**
 * Reads and checks the whole file before writing anything, then writes it in one transaction, so
 * a bad entry leaves the store as it was. Returns the number of users imported.
 */
export async function importDemoFile(
  file: string,
  config: Readonly<Config>,
  clock: Clock,
  progress: (message: string) => void = () => {},
): Promise<number> {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ImportError(`${file}: cannot read it as JSON: ${(error as Error).message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ImportError(`${file}: expected an object of "<ip>": "<ISO time>" pairs`);
  }
  const latestMs = clock.nowMs() + 60_000;
  const entries: { address: string; lastSeenMs: number }[] = [];
  for (const [address, value] of Object.entries(data)) {
    if (!ipaddr.isValid(address)) throw new ImportError(`${file}: ${JSON.stringify(address)} is not an IP address`);
    const lastSeenMs = typeof value === 'string' ? parseDemoTime(value) : null;
    if (lastSeenMs === null)
      throw new ImportError(`${file}: the time of ${address} is not an ISO-8601 time: ${JSON.stringify(value)}`);
    if (lastSeenMs > latestMs)
      throw new ImportError(`${file}: the time of ${address} is in the future: ${String(value)}`);
    entries.push({ address: normalizeAddress(address), lastSeenMs });
  }
  const secret = loadOrCreateSecret(config.dataDir, config.identitySecret);
  const pseudonymizer = new Pseudonymizer(secret);
  const release = lockDataDir(config.dataDir);
  try {
    const store = SqliteStore.open(databasePath(config.dataDir), storeOptions(config), clock.nowMs(), {
      secretFingerprint: secretFingerprint(secret),
      maxDatabaseBytes: config.maxDatabaseBytes,
    });
    try {
      const total = entries.length;
      return store.importIdentities(
        entries.map(({ address, lastSeenMs }) => ({
          identity: pseudonymizer.pseudonym(addressIdentity(address)),
          lastSeenMs,
        })),
        (done) => progress(`imported ${done} of ${total} users`),
      );
    } finally {
      await store.close();
    }
  } finally {
    release();
  }
}
