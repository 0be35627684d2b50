// One table of the service's error codes: code -> HTTP status and message. Codes are never reused.
import createError from '@fastify/error';

export const ERRORS = {
  RATE_LIMITED: { status: 429, message: 'Too Many Requests: retry after %s s' },
  UNAUTHORIZED: { status: 401, message: 'a valid "Authorization: Bearer <token>" header is required' },
  INVALID_CLIENT_ID: { status: 400, message: 'client_id: %s' },
  INVALID_CHANNEL: { status: 400, message: 'channel: %s' },
  TOO_MANY_CHANNELS: { status: 422, message: 'channel: %s distinct channels are online already (the configured maximum); retry later or raise --max-channels' },
  INVALID_JSON: { status: 400, message: 'body is not valid JSON: %s' },
  INVALID_DATE_RANGE: { status: 400, message: '%s' },
  STORE_UNAVAILABLE: { status: 503, message: 'the store is unavailable: %s' },
  SHUTTING_DOWN: { status: 503, message: 'the service is shutting down' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

type Ctor = ReturnType<typeof createError>;
const ctors = new Map<ErrorCode, Ctor>();
for (const [code, { status, message }] of Object.entries(ERRORS) as [ErrorCode, { status: number; message: string }][]) {
  ctors.set(code, createError(`OS_${code}`, message, status));
}

/** An error with a status and a stable code, e.g. `OS_RATE_LIMITED`, rendered by the app's error handler. */
export function serviceError(code: ErrorCode, ...args: unknown[]): Error & { statusCode: number; code: string } {
  const Ctor = ctors.get(code);
  if (!Ctor) throw new Error(`unknown error code ${code}`);
  return new Ctor(...args) as Error & { statusCode: number; code: string };
}

/** A configuration value that cannot be used: start-up stops with exit code 2. */
export class ConfigError extends Error {
  constructor(readonly setting: string, detail: string) {
    super(`${setting}: ${detail}`);
    this.name = 'ConfigError';
  }
}

/** A store that cannot be reached or written: answered with 503 and Retry-After. */
export class StoreUnavailableError extends Error {
  readonly statusCode = 503;
  readonly code = 'OS_STORE_UNAVAILABLE';
  constructor(detail: string, options?: { cause?: unknown }) {
    super(`the store is unavailable: ${detail}`, options);
    this.name = 'StoreUnavailableError';
  }
}
