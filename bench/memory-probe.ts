// Child process of case 3: memory of an open store, or of a rate limiter fed a million callers, after full garbage
// collections; prints one JSON line.
//
//   node --expose-gc --import tsx bench/memory-probe.ts <dataDir>        {"rssBytes","heapUsedBytes","online"}
//   node --expose-gc --import tsx bench/memory-probe.ts --rate-limiter
// {"entries","maxKeys","keysFed","heapUsedBytes","rssBytes"} (growth)
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { defaultConfig } from '../src/config.js';
import { PSEUDONYM_BYTES } from '../src/identity.js';
import { MemoryRateLimiterStore } from '../src/ratelimit/memory.js';
import { storeOptions } from '../src/open-store.js';
import { DATABASE_FILE, SqliteStore } from '../src/store/sqlite.js';

const MAX_KEYS = 100_000;
const KEYS_FED = 1_000_000;

const collect = globalThis.gc;
if (collect === undefined) throw new Error('run with node --expose-gc');

/** Several full collections with turns of the event loop between, so what is left is what is held. */
async function settle(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 4; i++) {
    collect?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage();
}

async function storeMemory(dataDir: string) {
  const store = SqliteStore.open(join(dataDir, DATABASE_FILE), storeOptions(defaultConfig()), Date.now());
  const online = await store.countOnline(Date.now());
  const usage = await settle();
  await store.close();
  return { rssBytes: usage.rss, heapUsedBytes: usage.heapUsed, online };
}

async function rateLimiterMemory() {
  const before = await settle();
  const limiter = new MemoryRateLimiterStore(MAX_KEYS);
  const rate = { count: 1, periodMs: 1000, burst: 1 };
  const startMs = Date.now();
  const CHUNK = 1024;
  for (let start = 0; start < KEYS_FED; start += CHUNK) {
    const random = randomBytes(CHUNK * PSEUDONYM_BYTES);
    for (let i = 0; i < CHUNK && start + i < KEYS_FED; i++) {
      // Shaped like the service's keys: the budget, then a 16-character latin1 pseudonym.
      const pseudonym = random.toString('latin1', i * PSEUDONYM_BYTES, (i + 1) * PSEUDONYM_BYTES);
      limiter.take(`ingest:${pseudonym}`, rate, startMs + start + i);
    }
  }
  const after = await settle();
  return {
    entries: limiter.size,
    maxKeys: limiter.maxKeys,
    keysFed: KEYS_FED,
    heapUsedBytes: after.heapUsed - before.heapUsed,
    rssBytes: after.rss - before.rss,
  };
}

const target = process.argv[2];
if (target === undefined) throw new Error('usage: memory-probe.ts <dataDir> | --rate-limiter');
const result = target === '--rate-limiter' ? await rateLimiterMemory() : await storeMemory(target);
process.stdout.write(`${JSON.stringify(result)}\n`);
