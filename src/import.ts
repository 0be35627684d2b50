// `online-stats import`: migrates the FastAPI demo's users_data.json into the configured store (SQLite or Redis).
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import ipaddr from 'ipaddr.js';
import { none } from 'stream-chain/defs.js';
import { jsonParser, type Token } from 'stream-json/core/parser.js';
import type { Clock } from './clock.js';
import { flagOf, type Config } from './config.js';
import { ConfigError, ImportError } from './errors.js';
import { Pseudonymizer, addressIdentity, loadOrCreateSecret, normalizeAddress, secretFingerprint } from './identity.js';
import { lockDataDir } from './lockfile.js';
import { storeOptions } from './open-store.js';
import { SqliteStore, databasePath } from './store/sqlite.js';

// The demo wrote datetime.utcnow().isoformat(): no zone (UTC meant), microseconds.
const ISO = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$/;

/** Entries written per SQLite transaction: large enough that commits stay few, small enough that progress keeps up. */
const SQLITE_BATCH = 50_000;
/** Entries per Redis round trip (one ZADD per shard): bounded, so a large file never piles up in the client. */
const REDIS_BATCH = 10_000;
/** Page cache of the import's SQLite connection: random-order inserts (pseudonyms) need the table's pages at hand. */
const IMPORT_CACHE_BYTES = 40 * 1024 * 1024;
/** Bytes read from the file at a time. */
const READ_CHUNK_BYTES = 64 * 1024;

export function parseDemoTime(text: string): number | null {
  const match = ISO.exec(text);
  if (!match) return null;
  const fraction = (match[3] ?? '').padEnd(3, '0').slice(0, 3);
  const ms = Date.parse(`${match[1]}T${match[2]}.${fraction}${match[4] ?? 'Z'}`);
  return Number.isNaN(ms) ? null : ms;
}

/** One imported user: a pseudonym and when the demo last saw it. */
export interface ImportedIdentity {
  identity: string;
  lastSeenMs: number;
}

/** Where an import writes: a SQLite file in the data directory, or a Redis deployment. */
interface ImportTarget {
  write(entries: readonly ImportedIdentity[]): Promise<void>;
  readonly batchSize: number;
  close(): Promise<void>;
}

export interface ImportOptions {
  /** Each progress line (without a newline). */
  progress?: (message: string) => void;
  /** How often a progress line is written while the import runs, in ms. */
  progressIntervalMs?: number;
}

/** The file's size, or an ImportError saying why it cannot be read (missing, a directory, not readable). */
async function checkReadable(file: string): Promise<number> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw new ImportError(`${file}: ${whyUnreadable(error)}`);
  }
  try {
    const stats = await handle.stat();
    if (stats.isDirectory())
      throw new ImportError(`${file} is a directory: name the demo's users_data.json file itself`);
    if (!stats.isFile())
      throw new ImportError(`${file} is not a regular file: the import reads it twice, so copy it to a file first`);
    return stats.size;
  } finally {
    await handle.close();
  }
}

function whyUnreadable(error: unknown): string {
  switch ((error as { code?: unknown }).code) {
    case 'ENOENT':
      return `no such file (looked for it from ${process.cwd()}); name the demo's users_data.json`;
    case 'EACCES':
    case 'EPERM':
      return "permission denied: this user cannot read it; check the file's owner and mode";
    case 'EISDIR':
      return "is a directory: name the demo's users_data.json file itself";
    default:
      return `cannot be read: ${(error as Error).message}`;
  }
}

/**
 * Reads the file as a stream, calling `onEntry` for each "<ip>": "<ISO time>" pair, each checked as it comes:
 * memory stays flat however large the file. stream-json's tokenizer (without its stream wrappers, called chunk by
 * chunk) reads a million entries in about half a second here; everything but a flat object of string values is
 * refused, so no nesting needs tracking.
 */
async function readEntries(
  file: string,
  latestMs: number,
  onEntry: (address: string, lastSeenMs: number) => void | Promise<void>,
  onBytes: (bytesRead: number) => void,
): Promise<void> {
  const parse = jsonParser({ streamValues: false });
  const stream = createReadStream(file, { encoding: 'utf8', highWaterMark: READ_CHUNK_BYTES });
  let state = 'start' as 'start' | 'key' | 'value' | 'end';
  let key = '';
  let first = true;
  const bad = (message: string) => new ImportError(`${file}: ${message}`);
  const tokensOf = (chunk: string | typeof none): readonly Token[] => {
    try {
      // The end of input is the `none` symbol, which the typings of this entry point leave out.
      const out = parse(chunk as string);
      return out === none ? [] : (out as { values: Token[] }).values;
    } catch (error) {
      throw bad(`cannot read it as JSON (at about byte ${stream.bytesRead}): ${(error as Error).message}`);
    }
  };
  const handle = async (tokens: readonly Token[]) => {
    for (const token of tokens) {
      if (state === 'start') {
        if (token.name !== 'startObject') throw bad('expected an object of "<ip>": "<ISO time>" pairs');
        state = 'key';
      } else if (state === 'key') {
        if (token.name === 'endObject') state = 'end';
        else if (token.name === 'keyValue') {
          key = token.value;
          if (!ipaddr.isValid(key)) throw bad(`${JSON.stringify(key)} is not an IP address`);
          state = 'value';
        }
      } else if (state === 'value') {
        if (token.name !== 'stringValue')
          throw bad(`the time of ${key} is not an ISO-8601 time: a JSON ${token.name.replace(/Value$|^start/, '')}`);
        const lastSeenMs = parseDemoTime(token.value);
        if (lastSeenMs === null)
          throw bad(`the time of ${key} is not an ISO-8601 time: ${JSON.stringify(token.value)}`);
        if (lastSeenMs > latestMs) throw bad(`the time of ${key} is in the future: ${token.value}`);
        await onEntry(key, lastSeenMs);
        state = 'key';
      }
    }
  };
  try {
    for await (const chunk of stream as AsyncIterable<string>) {
      // A byte-order mark (an editor's) is not JSON, and not worth refusing the file for.
      const text = first && chunk.startsWith('\uFEFF') ? chunk.slice(1) : chunk;
      first = false;
      await handle(tokensOf(text));
      onBytes(stream.bytesRead);
    }
    await handle(tokensOf(none));
  } catch (error) {
    // A read failing half-way (an I/O error) is the file's; a write failing (a full disk, Redis gone) is the store's.
    if (error instanceof Error && 'syscall' in error) throw bad(`cannot be read: ${error.message}`);
    throw error;
  } finally {
    stream.destroy();
  }
  if (state !== 'end') throw bad('cannot read it as JSON: it ends early');
}

/** Writes a progress line every `intervalMs` while a pass runs: how far, how fast, how long still. */
class Progress {
  private timer: NodeJS.Timeout | null = null;
  private startedMs = 0;
  private done = 0;
  private fraction = 0;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly write: (message: string) => void,
  ) {}

  /** `describe(done)` names what is done ("412000 entries checked"). */
  start(describe: (done: number) => string): void {
    this.stop();
    this.startedMs = this.clock.nowMs();
    this.done = 0;
    this.fraction = 0;
    this.timer = setInterval(() => this.write(this.line(describe)), this.intervalMs);
  }

  /** `fraction`: of the whole pass (bytes read of the file's size, or entries written of the total). */
  update(done: number, fraction: number): void {
    this.done = done;
    this.fraction = fraction;
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private line(describe: (done: number) => string): string {
    const seconds = (this.clock.nowMs() - this.startedMs) / 1000;
    const rate = seconds > 0 ? Math.round(this.done / seconds) : 0;
    const percent = Math.floor(this.fraction * 100);
    const left =
      this.fraction > 0
        ? `about ${Math.ceil((seconds * (1 - this.fraction)) / this.fraction)} s left`
        : 'time left unknown yet';
    return `${describe(this.done)} (${percent}%), ${rate}/s, ${left}`;
  }
}

/**
 * Two passes over the file. The first checks every entry and writes nothing, so a bad entry (or a file that is not
 * the demo's) leaves the store exactly as it was. The second writes, in transactions (SQLite) or round trips (Redis)
 * of bounded size, so memory stays flat; if it is cut short (a crash, a full disk, Redis gone) the entries written so
 * far stay, and running the import again finishes it: importing is idempotent (last seen becomes the later, first
 * seen the earlier of the stored and the imported time). Returns the number of entries imported.
 */
export async function importDemoFile(
  file: string,
  config: Readonly<Config>,
  clock: Clock,
  options: ImportOptions = {},
): Promise<number> {
  const write = options.progress ?? (() => {});
  const progress = new Progress(clock, options.progressIntervalMs ?? 1000, write);
  const size = await checkReadable(file);
  const latestMs = clock.nowMs() + 60_000;
  try {
    let total = 0;
    progress.start((done) => `checking ${file}: ${done} entries`);
    await readEntries(
      file,
      latestMs,
      () => {
        total++;
      },
      (bytes) => progress.update(total, size > 0 ? bytes / size : 1),
    );
    progress.stop();
    write(`checked ${total} entries of ${file}: importing`);
    const target = await openTarget(config, clock);
    try {
      const pseudonymizer = new Pseudonymizer(target.secret);
      let written = 0;
      let batch: ImportedIdentity[] = [];
      const flush = async () => {
        await target.write(batch);
        written += batch.length;
        batch = [];
        progress.update(written, total > 0 ? written / total : 1);
      };
      progress.start((done) => `imported ${done} of ${total} users`);
      await readEntries(
        file,
        latestMs,
        async (address, lastSeenMs) => {
          batch.push({ identity: pseudonymizer.pseudonym(addressIdentity(normalizeAddress(address))), lastSeenMs });
          if (batch.length >= target.batchSize) await flush();
        },
        () => {},
      );
      await flush();
      return written;
    } finally {
      progress.stop();
      await target.close();
    }
  } finally {
    progress.stop();
  }
}

/** The store `config.store` names, opened for the import, with the identity secret it pseudonymises under. */
async function openTarget(config: Readonly<Config>, clock: Clock): Promise<ImportTarget & { secret: string }> {
  if (config.store === 'redis') return openRedisTarget(config);
  const secret = loadOrCreateSecret(config.dataDir, config.identitySecret);
  const release = lockDataDir(config.dataDir);
  try {
    const store = SqliteStore.open(databasePath(config.dataDir), storeOptions(config), clock.nowMs(), {
      secretFingerprint: secretFingerprint(secret),
      maxDatabaseBytes: config.maxDatabaseBytes,
      cacheBytes: IMPORT_CACHE_BYTES,
    });
    return {
      secret,
      batchSize: SQLITE_BATCH,
      async write(entries) {
        store.importIdentities(entries);
        // Lets the progress timer run between transactions.
        await new Promise((resolve) => setImmediate(resolve));
      },
      async close() {
        try {
          await store.close();
        } finally {
          release();
        }
      },
    };
  } catch (error) {
    release();
    throw error;
  }
}

/** Redis: the deployment the service instances share, so the secret must be theirs, given (never made here). */
async function openRedisTarget(config: Readonly<Config>): Promise<ImportTarget & { secret: string }> {
  if (config.redisUrl === null) throw new ConfigError(flagOf('redisUrl'), 'is required with --store redis');
  if (config.identitySecret === null)
    throw new ConfigError(
      flagOf('identitySecret'),
      "is required with --store redis: give the instances' own secret, or imported users will not match them",
    );
  const { RedisStore } = await import('./store/redis.js');
  const prefix = config.redisPrefix ?? '';
  const store = await RedisStore.open(
    {
      url: config.redisUrl,
      prefix,
      shards: config.redisShards,
      secretFingerprint: secretFingerprint(config.identitySecret),
    },
    storeOptions(config),
  );
  return {
    secret: config.identitySecret,
    batchSize: REDIS_BATCH,
    write: (entries) => store.importIdentities(entries),
    close: () => store.close(),
  };
}

/** Where `importDemoFile` writes under `config`, for the closing line: never the Redis URL (it may hold a password). */
export function importDestination(config: Readonly<Config>): string {
  return config.store === 'redis' ? `redis (key prefix ${JSON.stringify(config.redisPrefix ?? '')})` : config.dataDir;
}
