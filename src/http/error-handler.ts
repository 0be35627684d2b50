// How failures are answered: one JSON shape for every error and for unknown routes, with stable codes from the ERRORS
// table.
import { STATUS_CODES } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { ERRORS, codeOf, serviceError } from '../errors.js';
import { RateLimitedLog } from '../rate-limited-log.js';

type RaisedError = Error & { statusCode?: number; code?: string };

/** `notFound`: also answer unknown URLs (at the app's prefix) in this shape. */
export function installErrorHandlers(app: FastifyInstance, notFound: boolean): void {
  // A fault refuses every request alike (a full disk, Redis down): one line per reason per window, with a count.
  const log = new RateLimitedLog(app.log);
  app.addHook('onClose', async () => log.flush());
  app.setErrorHandler((error: RaisedError, request, reply) => {
    const statusCode = error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    // A 503 is an expected state (store unreachable, shutting down): a line without a stack.
    if (statusCode === 503)
      log.write(
        request.log,
        'warn',
        { code: error.code, reason: error.message },
        'request refused: service unavailable',
        `503 ${error.message}`,
      );
    else if (statusCode >= 500)
      log.write(request.log, 'error', { err: error }, 'request failed', `500 ${error.message}`);
    if (statusCode === 503) reply.header('retry-after', '1');
    const message = statusCode >= 500 && statusCode !== 503 ? ERRORS.INTERNAL.message : error.message;
    void reply.status(statusCode).send({
      statusCode,
      code: error.code ?? codeOf(statusCode >= 500 ? 'INTERNAL' : 'BAD_REQUEST'),
      error: statusText(statusCode),
      message,
      detail: message,
    });
  });
  if (!notFound) return;
  app.setNotFoundHandler((request, reply) => {
    const { statusCode, code, message } = serviceError('NOT_FOUND', request.method, request.url.split('?')[0]);
    void reply.status(statusCode).send({ statusCode, code, error: statusText(statusCode), message });
  });
}

function statusText(status: number): string {
  return STATUS_CODES[status] ?? (status >= 500 ? 'Server Error' : 'Client Error');
}
