// The only reader of flags and environment: one table of settings with defaults and units, validated once, frozen.
// One job, over 350 lines because the table has a row per setting; parsing and checks follow it.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import ipaddr from 'ipaddr.js';
import { parseRules, type AlertRule } from './alert-rules.js';
import { AlertRuleError, ConfigError } from './errors.js';

/** A rate: `count` requests per `periodMs`, with `burst` allowed back to back. */
export interface Rate {
  count: number;
  periodMs: number;
  burst: number;
}

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  /** Largest the SQLite database may grow, in bytes; null: as large as the disk allows. */
  maxDatabaseBytes: number | null;
  store: 'sqlite' | 'redis';
  redisUrl: string | null;
  /** Prepended to every Redis key (several deployments on one Redis); null: none. */
  redisPrefix: string | null;
  /** Shards (hash tags) identities are spread over in Redis; the same on every instance, for the life of the data. */
  redisShards: number;
  heartbeatTimeoutMs: number;
  /** null: that limit is off. */
  ingestRateLimit: Rate | null;
  readRateLimit: Rate | null;
  /** Client ids of batch ingest per caller (each id is one unit). */
  batchRateLimit: Rate | null;
  /** Client ids looked up through POST /presence per caller (each id is one unit). */
  presenceRateLimit: Rate | null;
  addressRateLimit: Rate | null;
  /** Most callers each in-process limiter remembers; the least recently seen is forgotten past it. */
  rateLimitMaxKeys: number;
  trustProxy: readonly string[];
  maxDays: number;
  /** Days the per-minute concurrency series are kept (hours: maxDays). */
  historyMinuteDays: number;
  /** Days an identity is kept after its last heartbeat (default: maxDays); then it is deleted. */
  retentionDays: number;
  /** What POST /presence tells of the last heartbeat: a coarse bucket, or the instant. */
  presenceDetail: 'buckets' | 'exact';
  apiToken: string | null;
  /** A token for batch ingest only (gateways), besides the API token. */
  ingestToken: string | null;
  /** The HMAC key of pseudonyms: given, or read from `identitySecretFile`; null: the data directory's own. */
  identitySecret: string | null;
  /** Where `identitySecret` was read from (once, at start); null: not from a file. */
  identitySecretFile: string | null;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  maxChannels: number;
  maxChannelLength: number;
  /** Channel names (or prefixes, ending in *) that may be tracked; empty: any. */
  allowedChannels: readonly string[];
  maxBatchIds: number;
  corsOrigins: readonly string[];
  timeZone: string;
  shutdownTimeoutMs: number;
  /** Open connections at most, all clients together: kept below the file-descriptor limit. */
  maxConnections: number;
  /** Open connections at most from one IPv4 address or IPv6 /64 (trusted proxies excepted). */
  maxConnectionsPerAddress: number;
  /** Longest a client may take to send a whole request; a connection that sends nothing is closed after it. */
  requestTimeoutMs: number;
  /** Receivers of webhook events (docs/alerts.md); empty: no events are raised or sent. */
  webhookUrls: readonly string[];
  /** The Standard Webhooks signing secret (`whsec_` and base64); required with webhookUrls. */
  webhookSecret: string | null;
  webhookFormat: 'standard' | 'slack' | 'discord';
  /** A delivery is attempted again, with backoff, for this long after its event; then it is kept as failed. */
  webhookRetryForMs: number;
  /** Most deliveries the outbox keeps; past it the oldest go (delivered ones first). */
  webhookOutboxMax: number;
  /** Threshold rules on the online counts. */
  alerts: readonly AlertRule[];
  channelEvents: 'on' | 'off';
  /** A channel must stay empty this long before channel.vacated. */
  channelVacateDelayMs: number;
  /** At most one peak.record per series per this interval. */
  recordCooldownMs: number;
  /** peak.record for each channel too (always for the total). */
  recordChannels: 'on' | 'off';
}

type Kind = 'int' | 'duration' | 'size' | 'rate' | 'string' | 'list' | 'enum' | 'rules';

interface Setting {
  key: keyof Config;
  flag: string;
  env: string;
  kind: Kind;
  default: string;
  help: string;
  values?: readonly string[];
  min?: number;
  max?: number;
  secret?: boolean;
  /** The flag may be given more than once (each adds to the list). */
  repeatable?: boolean;
  /** How the default is shown when it follows another setting (`default` is then empty). */
  defaultText?: string;
}

/** Every setting: flag, environment variable, default (as typed on a command line) and meaning. */
export const SETTINGS: readonly Setting[] = [
  {
    key: 'port',
    flag: 'port',
    env: 'PORT',
    kind: 'int',
    default: '8001',
    min: 0,
    max: 65535,
    help: 'TCP port to listen on',
  },
  { key: 'host', flag: 'host', env: 'HOST', kind: 'string', default: '0.0.0.0', help: 'address to listen on' },
  {
    key: 'dataDir',
    flag: 'data-dir',
    env: 'DATA_DIR',
    kind: 'string',
    default: './data',
    help: 'directory of the SQLite database and the identity secret',
  },
  {
    key: 'maxDatabaseBytes',
    flag: 'max-database-size',
    env: 'MAX_DATABASE_SIZE',
    kind: 'size',
    default: 'off',
    min: 65_536,
    help: 'largest the SQLite database may grow (512m, 10g) or off; past it writes answer 503 and /readyz fails, as on a full disk',
  },
  {
    key: 'store',
    flag: 'store',
    env: 'STORE',
    kind: 'enum',
    values: ['sqlite', 'redis'],
    default: 'sqlite',
    help: 'where heartbeats are kept: sqlite (embedded) or redis (many instances)',
  },
  {
    key: 'redisUrl',
    flag: 'redis-url',
    env: 'REDIS_URL',
    kind: 'string',
    default: '',
    help: 'redis://host:port[/db] (or several, comma-separated, for a Redis Cluster); needed with --store redis',
  },
  {
    key: 'redisPrefix',
    flag: 'redis-prefix',
    env: 'REDIS_PREFIX',
    kind: 'string',
    default: 'os:',
    help: 'prefix of every Redis key, so several deployments can share one Redis (no { or })',
  },
  {
    key: 'redisShards',
    flag: 'redis-shards',
    env: 'REDIS_SHARDS',
    kind: 'int',
    default: '16',
    min: 1,
    max: 1024,
    help: 'Redis keys (hash tags, Cluster slots) identities are spread over; the same on every instance, fixed once data exists',
  },
  {
    key: 'heartbeatTimeoutMs',
    flag: 'heartbeat-timeout',
    env: 'HEARTBEAT_TIMEOUT',
    kind: 'duration',
    default: '10m',
    min: 1000,
    help: 'a client is online this long after its last heartbeat (30s, 10m, 1h)',
  },
  {
    key: 'ingestRateLimit',
    flag: 'rate-limit',
    env: 'RATE_LIMIT',
    kind: 'rate',
    default: '1/s',
    help: 'heartbeats and leaves per identity: N/s, N/m, N/h, optional burst N/s:B, or off',
  },
  {
    key: 'readRateLimit',
    flag: 'read-rate-limit',
    env: 'READ_RATE_LIMIT',
    kind: 'rate',
    default: '1/s',
    help: 'reads per identity, a budget separate from heartbeats (same syntax)',
  },
  {
    key: 'batchRateLimit',
    flag: 'batch-rate-limit',
    env: 'BATCH_RATE_LIMIT',
    kind: 'rate',
    default: '20000/s',
    help: 'client ids per second that one caller may send through POST /heartbeats, each id counting once (same syntax)',
  },
  {
    key: 'presenceRateLimit',
    flag: 'presence-rate-limit',
    env: 'PRESENCE_RATE_LIMIT',
    kind: 'rate',
    default: '5000/s',
    help: 'client ids per second that one caller may look up through POST /presence, each id counting once (same syntax)',
  },
  {
    key: 'addressRateLimit',
    flag: 'address-rate-limit',
    env: 'ADDRESS_RATE_LIMIT',
    kind: 'rate',
    default: '50/s:100',
    help: 'all requests from one IPv4 address or IPv6 /64, whatever client ids or addresses within it they use (same syntax)',
  },
  {
    key: 'rateLimitMaxKeys',
    flag: 'rate-limit-max-keys',
    env: 'RATE_LIMIT_MAX_KEYS',
    kind: 'int',
    default: '100000',
    min: 100,
    max: 100_000_000,
    help: 'callers each in-process limiter remembers (at most 200 bytes each); the least recently seen are forgotten beyond it',
  },
  {
    key: 'trustProxy',
    flag: 'trust-proxy',
    env: 'TRUST_PROXY',
    kind: 'list',
    default: '',
    help: 'comma-separated CIDRs of proxies whose X-Forwarded-For is believed (none by default)',
  },
  {
    key: 'maxDays',
    flag: 'max-days',
    env: 'MAX_DAYS',
    kind: 'int',
    default: '3650',
    min: 1,
    max: 36500,
    help: 'largest accepted days= of /total_users; days the hourly concurrency history is kept',
  },
  {
    key: 'historyMinuteDays',
    flag: 'history-minute-days',
    env: 'HISTORY_MINUTE_DAYS',
    kind: 'int',
    default: '14',
    min: 1,
    max: 3660,
    help: 'days the per-minute concurrency history is kept (then hours only)',
  },
  {
    key: 'retentionDays',
    flag: 'retention-days',
    env: 'RETENTION_DAYS',
    kind: 'int',
    // Empty: the value of --max-days (loadConfig).
    default: '',
    defaultText: 'the --max-days value',
    min: 1,
    max: 36500,
    help: 'days an identity is kept after its last heartbeat, then deleted (default: --max-days); see docs/privacy.md',
  },
  {
    key: 'presenceDetail',
    flag: 'presence-detail',
    env: 'PRESENCE_DETAIL',
    kind: 'enum',
    values: ['buckets', 'exact'],
    default: 'buckets',
    help: 'what POST /presence tells of the last heartbeat: now, recently, within_week, ... (buckets) or the instant (exact)',
  },
  {
    key: 'apiToken',
    flag: 'api-token',
    env: 'API_TOKEN',
    kind: 'string',
    default: '',
    secret: true,
    help: 'when set, reads and batch ingest need "Authorization: Bearer <token>"',
  },
  {
    key: 'ingestToken',
    flag: 'ingest-token',
    env: 'INGEST_TOKEN',
    kind: 'string',
    default: '',
    secret: true,
    help: 'a bearer token that allows batch ingest (POST /heartbeats) only; batch ingest is off unless it or --api-token is set',
  },
  {
    key: 'identitySecret',
    flag: 'identity-secret',
    env: 'IDENTITY_SECRET',
    kind: 'string',
    default: '',
    secret: true,
    help: 'HMAC key that pseudonymises identities (at least 32 characters); default: made at first start in the data directory; required with --store redis',
  },
  {
    key: 'identitySecretFile',
    flag: 'identity-secret-file',
    env: 'IDENTITY_SECRET_FILE',
    kind: 'string',
    default: '',
    help: 'file holding the identity secret, read once at start: keeps the key out of the data directory and its backups (instead of --identity-secret)',
  },
  {
    key: 'logLevel',
    flag: 'log-level',
    env: 'LOG_LEVEL',
    kind: 'enum',
    values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    default: 'info',
    help: 'log level',
  },
  {
    key: 'maxChannels',
    flag: 'max-channels',
    env: 'MAX_CHANNELS',
    kind: 'int',
    default: '1000',
    min: 1,
    max: 1_000_000,
    help: 'distinct channels that may be online at once',
  },
  {
    key: 'maxChannelLength',
    flag: 'max-channel-length',
    env: 'MAX_CHANNEL_LENGTH',
    kind: 'int',
    default: '64',
    min: 1,
    max: 1024,
    help: 'longest channel name, in characters',
  },
  {
    key: 'allowedChannels',
    flag: 'channels',
    env: 'CHANNELS',
    kind: 'list',
    default: '',
    help: 'comma-separated channels that may be tracked, a trailing * for a prefix (checkout,room-*); default: any, up to --max-channels',
  },
  {
    key: 'maxBatchIds',
    flag: 'max-batch-ids',
    env: 'MAX_BATCH_IDS',
    kind: 'int',
    default: '10000',
    min: 1,
    max: 1_000_000,
    help: 'most client ids in one POST /heartbeats',
  },
  {
    key: 'corsOrigins',
    flag: 'cors-origin',
    env: 'CORS_ORIGIN',
    kind: 'list',
    default: '',
    help: 'comma-separated origins whose pages may call the API (* for any); none by default',
  },
  {
    key: 'timeZone',
    flag: 'time-zone',
    env: 'TIME_ZONE',
    kind: 'string',
    default: 'UTC',
    help: 'IANA time zone where analytics days begin and end',
  },
  {
    key: 'shutdownTimeoutMs',
    flag: 'shutdown-timeout',
    env: 'SHUTDOWN_TIMEOUT',
    kind: 'duration',
    default: '10s',
    min: 0,
    help: 'on SIGTERM, longest wait for in-flight requests before closing (a second SIGTERM closes them at once)',
  },
  {
    key: 'maxConnections',
    flag: 'max-connections',
    env: 'MAX_CONNECTIONS',
    kind: 'int',
    default: '10000',
    min: 1,
    max: 10_000_000,
    help: 'open connections at most, all clients together; keep it below the open-files limit (ulimit -n) less 100',
  },
  {
    key: 'maxConnectionsPerAddress',
    flag: 'max-connections-per-address',
    env: 'MAX_CONNECTIONS_PER_ADDRESS',
    kind: 'int',
    default: '1000',
    min: 1,
    max: 10_000_000,
    help: 'open connections at most from one IPv4 address or IPv6 /64; connections from --trust-proxy are not capped by it',
  },
  {
    key: 'requestTimeoutMs',
    flag: 'request-timeout',
    env: 'REQUEST_TIMEOUT',
    kind: 'duration',
    default: '10s',
    min: 100,
    help: 'longest a client may take to send a whole request, headers and body; a connection that sends nothing is closed after it',
  },
  {
    key: 'webhookUrls',
    flag: 'webhook-url',
    env: 'WEBHOOK_URL',
    kind: 'list',
    default: '',
    repeatable: true,
    help: 'an http(s) URL that receives alert events (repeat the flag, or separate with commas, for several); none: no events',
  },
  {
    key: 'webhookSecret',
    flag: 'webhook-secret',
    env: 'WEBHOOK_SECRET',
    kind: 'string',
    default: '',
    secret: true,
    help: 'the Standard Webhooks signing secret, whsec_ and base64 of 24 to 64 random bytes; required with --webhook-url',
  },
  {
    key: 'webhookFormat',
    flag: 'webhook-format',
    env: 'WEBHOOK_FORMAT',
    kind: 'enum',
    values: ['standard', 'slack', 'discord'],
    default: 'standard',
    help: 'the body sent: the event as JSON (standard), or a message for a Slack or Discord incoming webhook',
  },
  {
    key: 'webhookRetryForMs',
    flag: 'webhook-retry-for',
    env: 'WEBHOOK_RETRY_FOR',
    kind: 'duration',
    default: '24h',
    min: 1000,
    help: 'how long an undelivered event is attempted again, with exponential backoff; then it is kept as failed',
  },
  {
    key: 'webhookOutboxMax',
    flag: 'webhook-outbox-max',
    env: 'WEBHOOK_OUTBOX_MAX',
    kind: 'int',
    default: '10000',
    min: 10,
    max: 10_000_000,
    help: 'deliveries the outbox keeps, pending and done; past it the oldest go, delivered ones first',
  },
  {
    key: 'alerts',
    flag: 'alert',
    env: 'ALERTS',
    kind: 'rules',
    default: '',
    repeatable: true,
    help: 'a threshold rule, repeatable ("online > 1000", "online{channel=checkout} < 5 for 10m"); in ALERTS separated by ;',
  },
  {
    key: 'channelEvents',
    flag: 'channel-events',
    env: 'CHANNEL_EVENTS',
    kind: 'enum',
    values: ['on', 'off'],
    default: 'off',
    help: 'send channel.occupied and channel.vacated when a channel fills and empties',
  },
  {
    key: 'channelVacateDelayMs',
    flag: 'channel-vacate-delay',
    env: 'CHANNEL_VACATE_DELAY',
    kind: 'duration',
    default: '5s',
    min: 0,
    help: 'a channel must stay empty this long before channel.vacated (a page reload fires nothing)',
  },
  {
    key: 'recordCooldownMs',
    flag: 'record-cooldown',
    env: 'RECORD_COOLDOWN',
    kind: 'duration',
    default: '10m',
    min: 0,
    help: 'at most one peak.record per series in this time; records set meanwhile are sent when it ends, the latest figure',
  },
  {
    key: 'recordChannels',
    flag: 'record-channels',
    env: 'RECORD_CHANNELS',
    kind: 'enum',
    values: ['on', 'off'],
    default: 'off',
    help: 'send peak.record for each channel too (the total always has it)',
  },
];

const nameOf = (setting: Setting): string => `--${setting.flag} / ${setting.env}`;

/** How a setting is named to people (`--redis-url / REDIS_URL`): the form every ConfigError uses. */
export function flagOf(key: keyof Config): string {
  const setting = SETTINGS.find((candidate) => candidate.key === key);
  if (!setting) throw new Error(`no setting ${key}`);
  return nameOf(setting);
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDurationMs(text: string): number | null {
  const match = DURATION.exec(text.trim());
  if (!match) return null;
  return Math.round(Number(match[1]) * (UNIT_MS[match[2] as string] as number));
}

const SIZE = /^(\d+)([kmg])$/;
const UNIT_BYTES: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** `64k`, `512m`, `10g` (binary units) in bytes; null for `off`; 'invalid' otherwise. */
export function parseSizeBytes(text: string): number | null | 'invalid' {
  const trimmed = text.trim().toLowerCase();
  if (trimmed === 'off') return null;
  const match = SIZE.exec(trimmed);
  if (!match) return 'invalid';
  return Number(match[1]) * (UNIT_BYTES[match[2] as string] as number);
}

const RATE = /^(\d+)\/(\d*)(ms|s|m|h)(?::(\d+))?$/;

export function parseRate(text: string): Rate | null | 'invalid' {
  const trimmed = text.trim().toLowerCase();
  if (trimmed === 'off' || trimmed === '0') return null;
  const match = RATE.exec(trimmed);
  if (!match) return 'invalid';
  const count = Number(match[1]);
  const periodMs = Number(match[2] || '1') * (UNIT_MS[match[3] as string] as number);
  const burst = match[4] === undefined ? count : Number(match[4]);
  if (count < 1 || periodMs < 1 || burst < 1) return 'invalid';
  return { count, periodMs, burst };
}

function convert(setting: Setting, raw: string): unknown {
  const bad = (why: string): never => {
    throw new ConfigError(nameOf(setting), `${why} (got ${JSON.stringify(setting.secret ? '***' : raw)})`);
  };
  switch (setting.kind) {
    case 'int': {
      if (!/^\d+$/.test(raw.trim())) bad('expected a whole number');
      const value = Number(raw);
      if (setting.min !== undefined && value < setting.min) bad(`must be at least ${setting.min}`);
      if (setting.max !== undefined && value > setting.max) bad(`must be at most ${setting.max}`);
      return value;
    }
    case 'duration': {
      const ms = parseDurationMs(raw);
      if (ms === null) bad('expected a duration such as 30s, 10m or 1h');
      if (setting.min !== undefined && (ms as number) < setting.min) bad(`must be at least ${setting.min} ms`);
      return ms;
    }
    case 'size': {
      const bytes = parseSizeBytes(raw);
      if (bytes === 'invalid') bad('expected a size such as 64k, 512m or 10g, or off');
      if (bytes !== null && setting.min !== undefined && (bytes as number) < setting.min)
        bad(`must be at least ${setting.min / 1024}k`);
      return bytes;
    }
    case 'rate': {
      const rate = parseRate(raw);
      if (rate === 'invalid') bad('expected N/s, N/m, N/h, N/10s, with an optional burst N/s:B, or off');
      return rate;
    }
    case 'enum':
      if (!setting.values?.includes(raw)) bad(`expected one of ${setting.values?.join(', ')}`);
      return raw;
    case 'list':
      return Object.freeze(
        raw
          .split(',')
          .map((part) => part.trim())
          .filter(Boolean),
      );
    case 'string':
      return raw === '' ? null : raw;
    case 'rules':
      try {
        return Object.freeze(
          parseRules(
            raw
              .split(';')
              .map((part) => part.trim())
              .filter(Boolean),
          ),
        );
      } catch (error) {
        if (error instanceof AlertRuleError) throw new ConfigError(nameOf(setting), error.message);
        throw error;
      }
  }
}

function checkCidr(text: string): void {
  try {
    if (text.includes('/')) ipaddr.parseCIDR(text);
    else ipaddr.parse(text);
  } catch {
    throw new ConfigError(flagOf('trustProxy'), `not an address or CIDR: ${JSON.stringify(text)}`);
  }
}

/**
 * Reads settings from flags (first), then environment, then defaults; validates every one and
 * returns a frozen object. Throws ConfigError naming the setting on the first bad value.
 */
export function loadConfig(
  argv: readonly string[] = [],
  env: Readonly<Record<string, string | undefined>> = {},
): Readonly<Config> {
  const options: Record<string, { type: 'string'; multiple?: boolean }> = {};
  for (const setting of SETTINGS)
    options[setting.flag] = setting.repeatable ? { type: 'string', multiple: true } : { type: 'string' };
  let values: Record<string, string | string[] | undefined>;
  try {
    values = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new ConfigError('flags', (error as Error).message);
  }
  const config: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const flagged = values[setting.flag];
    const given = Array.isArray(flagged)
      ? flagged.join(setting.kind === 'rules' ? ';' : ',')
      : (flagged ?? env[setting.env]);
    // An empty token given on purpose would turn authentication off without a word: refused.
    if ((setting.key === 'apiToken' || setting.key === 'ingestToken') && given !== undefined && given.trim() === '') {
      throw new ConfigError(nameOf(setting), 'must not be empty; leave it unset to go without it');
    }
    const raw = given ?? setting.default;
    // A default that follows another setting: filled in below.
    config[setting.key] = raw === '' && setting.kind === 'int' ? null : convert(setting, raw);
  }
  const result = config as unknown as Config;
  (result as { retentionDays: number | null }).retentionDays ??= result.maxDays;
  if (result.host === null) throw new ConfigError(flagOf('host'), 'must not be empty');
  if (result.dataDir === null) throw new ConfigError(flagOf('dataDir'), 'must not be empty');
  result.trustProxy.forEach(checkCidr);
  if (result.identitySecretFile !== null) result.identitySecret = readSecretFile(result);
  else if (result.identitySecret !== null && result.identitySecret.length < 32) {
    throw new ConfigError(flagOf('identitySecret'), 'must be at least 32 characters');
  }
  if (result.redisPrefix !== null && /[{}]/.test(result.redisPrefix)) {
    throw new ConfigError(
      flagOf('redisPrefix'),
      'must not contain { or } (they would change the Redis Cluster hash tags)',
    );
  }
  if (result.store === 'redis' && result.redisUrl === null) {
    throw new ConfigError(flagOf('redisUrl'), 'is required with --store redis');
  }
  if (result.store === 'redis' && result.identitySecret === null) {
    throw new ConfigError(
      flagOf('identitySecret'),
      `is required with --store redis (or ${flagOf('identitySecretFile')}): every instance must pseudonymise ` +
        'identities with the same key, or one user would count as many',
    );
  }
  checkWebhooks(result);
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: result.timeZone });
  } catch {
    throw new ConfigError(flagOf('timeZone'), `not an IANA time zone: ${JSON.stringify(result.timeZone)}`);
  }
  return Object.freeze(result);
}

/** Receivers are http(s) URLs with a signing secret; events need somewhere to go. */
function checkWebhooks(config: Config): void {
  for (const url of config.webhookUrls) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(url);
    } catch {
      // reported below
    }
    if (parsed === null || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:'))
      throw new ConfigError(flagOf('webhookUrls'), `not an http or https URL: ${JSON.stringify(url)}`);
  }
  const secret = config.webhookSecret;
  if (config.webhookUrls.length > 0 && secret === null)
    throw new ConfigError(flagOf('webhookSecret'), `is required with ${flagOf('webhookUrls')}: receivers verify it`);
  if (secret !== null) {
    const key = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(secret)?.[1];
    const bytes = key === undefined ? 0 : Buffer.from(key, 'base64').length;
    if (bytes < 24 || bytes > 64)
      throw new ConfigError(
        flagOf('webhookSecret'),
        'must be whsec_ and the base64 of 24 to 64 random bytes (make one with: echo "whsec_$(openssl rand -base64 32)")',
      );
  }
  if (config.webhookUrls.length === 0) {
    if (config.alerts.length > 0)
      throw new ConfigError(flagOf('alerts'), `needs ${flagOf('webhookUrls')}: its events would go nowhere`);
    if (config.channelEvents === 'on')
      throw new ConfigError(flagOf('channelEvents'), `needs ${flagOf('webhookUrls')}: its events would go nowhere`);
  }
}

/** The key in `identitySecretFile`, read once (a secret manager's file, a systemd credential, a mounted Secret). */
function readSecretFile(config: Config): string {
  const path = config.identitySecretFile as string;
  const bad = (why: string): never => {
    throw new ConfigError(flagOf('identitySecretFile'), why);
  };
  if (config.identitySecret !== null) bad(`give the key either in a file or as ${flagOf('identitySecret')}, not both`);
  let secret = '';
  try {
    secret = readFileSync(path, 'utf8').trim();
  } catch (error) {
    bad(`cannot read ${path}: ${(error as Error).message}`);
  }
  if (secret === '') bad(`${path} is empty; it must hold the key (at least 32 characters)`);
  if (secret.length < 32) bad(`${path} holds ${secret.length} characters; the key must have at least 32`);
  return secret;
}

/** The process's own flags and environment: the one place in the service that reads `process.env`. */
export function configFromProcess(argv: readonly string[]): Readonly<Config> {
  return loadConfig(argv, process.env);
}

/** Whether npx or `npm exec` started this process (npm_command, set by npm); see serveUntilSignalled(). */
export function startedByNpmExec(): boolean {
  return process.env.npm_command === 'exec';
}

/** Fields of Config to change; one given as undefined keeps its default. */
export type ConfigOverrides = { [K in keyof Config]?: Config[K] | undefined };

/**
 * The defaults, as `loadConfig()` with no flags and no environment, with `overrides` changed (the plugin's `config`;
 * tests override single fields). A field that is undefined keeps its default: `apiToken: process.env.STATS_TOKEN`
 * with the variable unset means no token, as in the README's example, not a token of undefined.
 */
export function defaultConfig(overrides: ConfigOverrides = {}): Readonly<Config> {
  const given = Object.entries(overrides).filter(([, value]) => value !== undefined);
  return Object.freeze({ ...loadConfig([], {}), ...(Object.fromEntries(given) as Partial<Config>) });
}

/** Help lines for the CLI and the README's configuration table. */
export function settingsHelp(keys?: readonly (keyof Config)[]): string {
  return SETTINGS.filter((s) => keys === undefined || keys.includes(s.key))
    .map(
      (s) =>
        `  --${s.flag} <value>`.padEnd(31) +
        ` ${s.help} [${s.env}; default: ${s.defaultText ?? (s.default === '' ? 'none' : s.default)}]`,
    )
    .join('\n');
}
