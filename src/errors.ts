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
  /** A request the service refused for a reason Fastify found (validation, size) and coded none. */
  BAD_REQUEST: { status: 400, message: '%s' },
  NOT_FOUND: { status: 404, message: 'no route %s %s' },
  STORE_UNAVAILABLE: { status: 503, message: 'the store is unavailable: %s' },
  TOO_MANY_STREAMS: { status: 503, message: 'too many live streams are open (%s); retry later' },
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

/** A configuration value that cannot be used: start-up stops with exit code 2. */
export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    detail: string,
  ) {
    super(`${setting}: ${detail}`);
    this.name = 'ConfigError';
  }
}

/** A store that cannot be reached or written: answered with 503 and Retry-After. */
export class StoreUnavailableError extends Error {
  readonly statusCode = ERRORS.STORE_UNAVAILABLE.status;
  readonly code = codeOf('STORE_UNAVAILABLE');
  constructor(detail: string, options?: { cause?: unknown }) {
    super(ERRORS.STORE_UNAVAILABLE.message.replace('%s', detail), options);
    this.name = 'StoreUnavailableError';
  }
}

/** Another process holds the data directory: start-up (or an import) stops with exit code 1. */
export class DataDirLockedError extends Error {
  constructor(
    readonly dataDir: string,
    readonly pid: number,
  ) {
    super(`the data directory ${dataDir} is in use by process ${pid}; stop it first`);
    this.name = 'DataDirLockedError';
  }
}

/** The file given to `online-stats import` cannot be imported: nothing was written, exit code 1. */
export class ImportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImportError';
  }
}
