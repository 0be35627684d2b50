// Fills a data directory with N known identities, M of them online, through the store's own import (seconds for a
// million).
import { join } from 'node:path';
import { defaultConfig } from '../src/config.js';
import { PSEUDONYM_BYTES, Pseudonymizer, identityOf } from '../src/identity.js';
import { storeOptions } from '../src/open-store.js';
import { DATABASE_FILE, SqliteStore } from '../src/store/sqlite.js';

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
/**
 * Online identities were last seen within this much before the seed: half the heartbeat timeout, so they stay online
 * for minutes.
 */
const ONLINE_WINDOW_MS = 5 * MINUTE_MS;
/** Offline identities are spread from just past the timeout back to this age. */
const HISTORY_MS = 60 * DAY_MS;
/** Comfortably past the default 10-minute heartbeat timeout. */
const OFFLINE_AFTER_MS = 11 * MINUTE_MS;

export interface SeedPlan {
  known: number;
  online: number;
  secret: string;
  nowMs: number;
}

/** The identity text of the n-th seeded client (a client id, as gateways and the SDK send). */
const seededIdentity = (n: number): string => identityOf(`client-${n}`, '');

// The HMACs are a third of a seed's time and every seed needs the same ones: made once, 16 bytes each.
let table: { secret: string; pseudonyms: Buffer; size: number } | null = null;

function pseudonymTable(secret: string, size: number): Buffer {
  if (table?.secret === secret && table.size >= size) return table.pseudonyms;
  const pseudonyms = Buffer.alloc(size * PSEUDONYM_BYTES);
  const from = table?.secret === secret ? table.size : 0;
  if (from > 0) table?.pseudonyms.copy(pseudonyms, 0, 0, from * PSEUDONYM_BYTES);
  const pseudonymizer = new Pseudonymizer(secret);
  for (let n = from; n < size; n++)
    pseudonyms.write(pseudonymizer.pseudonym(seededIdentity(n)), n * PSEUDONYM_BYTES, 'latin1');
  table = { secret, pseudonyms, size };
  return pseudonyms;
}

/**
 * Identities in order of decreasing last-seen time, evenly spread: the first `online` within the
 * online window, the rest over the 60 days before the timeout. Generated lazily so a million
 * entries never sit in an array.
 */
function* entries(plan: SeedPlan): Generator<{ identity: string; lastSeenMs: number }> {
  const pseudonyms = pseudonymTable(plan.secret, plan.known);
  const offline = plan.known - plan.online;
  for (let n = 0; n < plan.known; n++) {
    const lastSeenMs =
      n < plan.online
        ? plan.nowMs - Math.floor((n * ONLINE_WINDOW_MS) / Math.max(1, plan.online))
        : plan.nowMs -
          OFFLINE_AFTER_MS -
          Math.floor(((n - plan.online) * (HISTORY_MS - OFFLINE_AFTER_MS)) / Math.max(1, offline));
    yield { identity: pseudonyms.toString('latin1', n * PSEUDONYM_BYTES, (n + 1) * PSEUDONYM_BYTES), lastSeenMs };
  }
}

/**
 * Seeds `dataDir` (the store's default options) and closes the store, so the WAL is checkpointed into the database
 * file.
 */
export async function seedDataDir(
  dataDir: string,
  plan: SeedPlan,
  progress: (message: string) => void = () => {},
): Promise<{ seconds: number }> {
  const startedMs = performance.now();
  const store = SqliteStore.open(join(dataDir, DATABASE_FILE), storeOptions(defaultConfig()), plan.nowMs);
  try {
    store.importIdentities(entries(plan), (done) => {
      // Only worth a line when it is slow (a loaded machine, or far more than a million).
      if (performance.now() - startedMs > 5000)
        progress(`  seeded ${done.toLocaleString('en-US')} of ${plan.known.toLocaleString('en-US')} identities`);
    });
  } finally {
    await store.close();
  }
  return { seconds: (performance.now() - startedMs) / 1000 };
}

/**
 * How long a seeded directory may be reused: its online identities stay online for at least 5 minutes after the seed.
 */
const REUSE_FOR_MS = 3 * MINUTE_MS;

/**
 * Seeded directories shared by the cases that only read them (2, 3 and 4), re-seeded once too old to be "N online"
 * still.
 */
export class SeededDirs {
  private readonly dirs = new Map<string, { dataDir: string; seededMs: number }>();

  constructor(
    private readonly makeDir: (label: string) => string,
    private readonly secret: string,
    private readonly progress: (message: string) => void,
  ) {}

  async get(known: number, online: number): Promise<string> {
    const key = `${known}/${online}`;
    const cached = this.dirs.get(key);
    if (cached && Date.now() - cached.seededMs < REUSE_FOR_MS) return cached.dataDir;
    const dataDir = this.makeDir(`seed-${known}-${online}`);
    const seededMs = Date.now();
    const { seconds } = await seedDataDir(
      dataDir,
      { known, online, secret: this.secret, nowMs: seededMs },
      this.progress,
    );
    this.progress(
      `  seeded ${known.toLocaleString('en-US')} known / ${online.toLocaleString('en-US')} online in ${seconds.toFixed(1)} s`,
    );
    this.dirs.set(key, { dataDir, seededMs });
    return dataDir;
  }
}
