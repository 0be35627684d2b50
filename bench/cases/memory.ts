// Case 3: resident memory per online identity, database bytes per known identity, and the rate limiter's memory at its
// cap.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DATABASE_FILE } from '../../src/store/sqlite.js';
import type { BenchContext } from '../context.js';
import { against, bytes, count, type CaseReport, type Row } from '../report.js';
import { REPO_ROOT, spawnTracked, stop } from '../support.js';

const PROBE_TIMEOUT_MS = 180_000;
/** The documented bound (README, docs/operations.md): 200 bytes per remembered caller at the default 100,000. */
const RATE_LIMITER_TARGET_BYTES = 20_000_000;

/** Runs bench/memory-probe.ts and returns its JSON line, checked to hold the numbers `fields` names. */
async function probe<K extends string>(args: readonly string[], fields: readonly K[]): Promise<Record<K, number>> {
  const child = spawnTracked('memory probe', process.execPath, [
    '--expose-gc',
    '--import',
    'tsx',
    join(REPO_ROOT, 'bench', 'memory-probe.ts'),
    ...args,
  ]);
  try {
    const line = (await child.waitForLine(/^\{.*\}$/, PROBE_TIMEOUT_MS)).input;
    const exit = await child.exited;
    if (exit.code !== 0) throw new Error(`memory probe exited ${exit.code ?? exit.signal}:\n${child.tail()}`);
    const parsed: unknown = JSON.parse(line);
    const record = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
    const result = {} as Record<K, number>;
    for (const field of fields) {
      const value = record[field];
      if (typeof value !== 'number') throw new Error(`memory probe printed no number ${field}: ${line}`);
      result[field] = value;
    }
    return result;
  } finally {
    await stop(child, 'SIGKILL');
  }
}

const STORE_FIELDS = ['rssBytes', 'heapUsedBytes', 'online'] as const;

export async function memoryCase(ctx: BenchContext): Promise<CaseReport> {
  const known = ctx.known;
  ctx.log(`case 3: seeding ${count(known)} known with none online, then with all online`);
  const noneDir = await ctx.seeds.get(known, 0);
  const allDir = await ctx.seeds.get(known, known);
  ctx.log('case 3: memory probes');
  const none = await probe([noneDir], STORE_FIELDS);
  const all = await probe([allDir], STORE_FIELDS);
  const limiter = await probe(['--rate-limiter'], [
    'entries',
    'maxKeys',
    'keysFed',
    'heapUsedBytes',
    'rssBytes',
  ] as const);

  const databaseFile = join(noneDir, DATABASE_FILE);
  const wal = `${databaseFile}-wal`;
  const databaseBytes = statSync(databaseFile).size + (existsSync(wal) ? statSync(wal).size : 0);
  const onlineDelta = all.online - none.online;
  const rssPerOnline = (all.rssBytes - none.rssBytes) / onlineDelta;
  const heapPerOnline = (all.heapUsedBytes - none.heapUsedBytes) / onlineDelta;
  const dbPerKnown = databaseBytes / known;
  const row = (measure: string, value: string, target = '', verdict: Row['verdict'] = 'info'): Row => ({
    case: '3 memory, disk',
    measure,
    value,
    target,
    verdict,
  });
  return {
    title: 'Case 3: memory and disk',
    rows: [
      row(
        'online identities in the two stores',
        `${count(none.online)} / ${count(all.online)} (of ${count(known)} known each)`,
      ),
      row('probe RSS, none / all online', `${bytes(none.rssBytes)} / ${bytes(all.rssBytes)}`),
      row('RSS per online identity', `${count(rssPerOnline)} B`, '<= 250 B', against(rssPerOnline, { max: 250 })),
      row('heap used per online identity', `${count(heapPerOnline)} B`),
      row('database file (WAL checkpointed)', bytes(databaseBytes)),
      row('database bytes per known identity', `${count(dbPerKnown)} B`, '<= 200 B', against(dbPerKnown, { max: 200 })),
      row(
        `rate limiter entries after ${count(limiter.keysFed)} distinct keys`,
        count(limiter.entries),
        `<= ${count(limiter.maxKeys)}`,
        against(limiter.entries, { max: limiter.maxKeys }),
      ),
      row('rate limiter heap per entry', `${count(limiter.heapUsedBytes / limiter.entries)} B`),
      row(
        'rate limiter heap in all (RSS growth)',
        `${bytes(limiter.heapUsedBytes)} (${bytes(limiter.rssBytes)})`,
        '<= 20 MB',
        against(limiter.heapUsedBytes, { max: RATE_LIMITER_TARGET_BYTES }),
      ),
    ],
    notes: [
      'RSS and heap are read in a child process (node --expose-gc) after four full collections, with the store open: ' +
        'the difference between a store with every identity online (seen in the last 5 minutes) and one with none online (seen 11 minutes to 60 days ago).',
      'The database was filled through SqliteStore.importIdentities in random key order (pseudonyms), as real traffic fills it, then closed (WAL checkpointed).',
      `Rate limiter: new MemoryRateLimiterStore(${count(limiter.maxKeys)}) fed "ingest:" + 16-character pseudonym keys; growth of heapUsed (and RSS) from before it was made. MB = 10^6 bytes.`,
    ],
  };
}
