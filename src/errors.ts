// Every error the service raises: one table of codes (code -> HTTP status and message, never reused) and the error
// classes.
import createError from '@fastify/error';

export const ERRORS = {
  RATE_LIMITED: { status: 429, message: 'Too Many Requests: retry after %s s' },
  UNAUTHORIZED: { status: 401, message: 'a valid "Authorization: Bearer <token>" header is required' },
  BATCH_INGEST_OFF: {
    status: 403,
    message:
      'batch ingest is off: it needs a credential, so the operator must set --ingest-token (or --api-token) first',
  },
  INVALID_CLIENT_ID: { status: 400, message: 'client_id: %s' },
  INVALID_CHANNEL: { status: 400, message: 'channel: %s' },
  TOO_MANY_CHANNELS: {
    status: 422,
    message:
      'channel: %s distinct channels are online already (the configured maximum); retry later or raise --max-channels',
  },
  INVALID_JSON: { status: 400, message: 'body is not valid JSON: %s' },
  INVALID_DATE_RANGE: { status: 400, message: '%s' },
  INVALID_FORWARDED_FOR: {
    status: 400,
    message: 'X-Forwarded-For: %s is not an IP address; a trusted proxy must send the client address only',
  },
  /** The socket closed before the request was handled: there is no address to count, and nobody to answer. */
  CONNECTION_CLOSED: { status: 400, message: 'the connection closed before the request was handled' },
  TOKEN_NOT_CONFIGURED: {
    status: 403,
    message: 'this route needs the API token, and none is configured: the operator must set --api-token first',
  },
  WEBHOOKS_OFF: { status: 409, message: 'no --webhook-url is configured: there is no receiver to send to' },
  /** A request the service refused for a reason Fastify found (validation, size) and coded none. */
  BAD_REQUEST: { status: 400, message: '%s' },
  NOT_FOUND: { status: 404, message: 'no route %s %s' },
  STORE_UNAVAILABLE: { status: 503, message: 'the store is unavailable: %s' },
  SHUTTING_DOWN: { status: 503, message: 'the service is shutting down' },
  /** A bug: the answer says no more than this, the log has the stack. */
  INTERNAL: { status: 500, message: 'internal error' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

/** The code as clients see it, e.g. `OS_RATE_LIMITED`. */
export const codeOf = (code: ErrorCode): string => `OS_${code}`;

type Ctor = ReturnType<typeof createError>;
const ctors = new Map<ErrorCode, Ctor>();
for (const [code, { status, message }] of Object.entries(ERRORS) as [
  ErrorCode,
  { status: number; message: string },
][]) {
  ctors.set(code, createError(codeOf(code), message, status));
}

/** An error with a status and a stable code, rendered by the app's error handler. */
export function serviceError(code: ErrorCode, ...args: unknown[]): Error & { statusCode: number; code: string } {
  const Ctor = ctors.get(code);
  if (!Ctor) throw new Error(`unknown error code ${code}`);
  return new Ctor(...args) as Error & { statusCode: number; code: string };
}

/**
 * How `online-stats` ends, one code per kind of failure (listed by --help and docs/operations.md); every error class
 * a start can end with carries its code, and the CLI exits with it.
 */
export const EXIT_CODES = {
  OK: { code: 0, meaning: 'done (serve: stopped by SIGTERM or SIGINT)' },
  FAILURE: {
    code: 1,
    meaning: 'an unexpected failure (a bug: the stack is printed), an import file refused, or healthcheck: not ready',
  },
  CONFIG: { code: 2, meaning: 'bad command line or configuration (the message names the setting)' },
  DATA_DIR: {
    code: 3,
    meaning:
      'the data directory cannot be used: in use by another process, not writable, or its database empty or damaged',
  },
  STORE_UNREACHABLE: { code: 4, meaning: 'the store cannot be reached at start (Redis down or unreachable)' },
} as const;

/** The exit codes as lines of --help. */
export function exitCodesHelp(): string {
  return Object.values(EXIT_CODES)
    .map(({ code, meaning }) => `  ${code}  ${meaning}`)
    .join('\n');
}

/** The exit code an error ends the command with: its class's, else 1 (unexpected). */
export function exitCodeOf(error: unknown): number {
  const code = (error as { exitCode?: unknown } | null)?.exitCode;
  return typeof code === 'number' ? code : EXIT_CODES.FAILURE.code;
}

/** A configuration value that cannot be used: start-up stops with exit code 2. */
export class ConfigError extends Error {
  readonly exitCode = EXIT_CODES.CONFIG.code;
  constructor(
    readonly setting: string,
    detail: string,
  ) {
    super(`${setting}: ${detail}`);
    this.name = 'ConfigError';
  }
}

/** A store that cannot be reached or written: answered with 503 and Retry-After; at start, exit code 4. */
export class StoreUnavailableError extends Error {
  readonly statusCode = ERRORS.STORE_UNAVAILABLE.status;
  readonly code = codeOf('STORE_UNAVAILABLE');
  readonly exitCode = EXIT_CODES.STORE_UNREACHABLE.code;
  constructor(detail: string, options?: { cause?: unknown }) {
    super(ERRORS.STORE_UNAVAILABLE.message.replace('%s', detail), options);
    this.name = 'StoreUnavailableError';
  }
}

// What the operator can do about each refusal of the file system or SQLite, by error code (SQLite's without its
// extended part: SQLITE_IOERR_SHORT_READ is SQLITE_IOERR).
const NOT_WRITABLE = "check its owner and permissions: it must be a directory this service's user can read and write";
const DAMAGED = 'restore it from a backup (docs/operations.md), or move it away to start counting afresh';
const DATA_DIR_FIXES: Record<string, string> = {
  EACCES: NOT_WRITABLE,
  EPERM: NOT_WRITABLE,
  EROFS: 'the file system is read-only: give the data directory a writable volume',
  ENOTDIR: 'a part of the path is a file: the data directory must be a directory, or not exist yet',
  EEXIST: 'a file is in the way: the data directory must be a directory, or not exist yet',
  EISDIR: 'a directory is in the way of a file of the data directory: move it away',
  ENOSPC: 'no space is left on its volume: free some',
  EIO: 'the disk cannot be read or written: check it',
  SQLITE_CANTOPEN: NOT_WRITABLE,
  SQLITE_READONLY: NOT_WRITABLE,
  SQLITE_PERM: NOT_WRITABLE,
  SQLITE_AUTH: NOT_WRITABLE,
  SQLITE_BUSY: 'another program holds the database locked (a sqlite3 shell, a backup tool): close it',
  SQLITE_FULL: 'no space is left on its volume (or --max-database-size is reached): free some',
  SQLITE_IOERR: 'the disk cannot be read or written: check it',
  SQLITE_NOTADB: `it is not a SQLite database: ${DAMAGED}`,
  SQLITE_CORRUPT: `the database is damaged: ${DAMAGED}`,
};

/** The data directory (or a file in it) cannot be used: start-up (or an import) stops with exit code 3. */
export class DataDirError extends Error {
  readonly exitCode = EXIT_CODES.DATA_DIR.code;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DataDirError';
  }

  /**
   * A refusal of the file system or SQLite about `path` as one line naming the problem and the fix; any other error
   * (a bug) is returned as it was.
   */
  static from(path: string, error: unknown): unknown {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code !== 'string') return error;
    const fix = DATA_DIR_FIXES[code] ?? DATA_DIR_FIXES[code.split('_').slice(0, 2).join('_')];
    if (fix === undefined) return error;
    return new DataDirError(`${path}: ${(error as Error).message}; ${fix}`, { cause: error });
  }
}

/** Another process holds the data directory: start-up (or an import) stops with exit code 3. */
export class DataDirLockedError extends DataDirError {
  constructor(readonly dataDir: string) {
    super(
      `the data directory ${dataDir} is in use by another online-stats process (on this machine, or in another ` +
        'container sharing the volume); stop it first',
    );
    this.name = 'DataDirLockedError';
  }
}

/** The file given to `online-stats import` cannot be imported: nothing was written, exit code 1. */
export class ImportError extends Error {
  readonly exitCode = EXIT_CODES.FAILURE.code;
  constructor(message: string) {
    super(message);
    this.name = 'ImportError';
  }
}

/** A rule that does not parse or cannot work: `position` is the 1-based column in `rule` of the first bad character. */
export class AlertRuleError extends Error {
  constructor(
    readonly rule: string,
    readonly position: number,
    readonly problem: string,
  ) {
    super(`alert rule "${rule}": at ${position}: ${problem}`);
    this.name = 'AlertRuleError';
  }
}
