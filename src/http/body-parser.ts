// Request bodies: JSON, and text/plain holding JSON (navigator.sendBeacon cannot set a JSON content type); an empty
// body is no body.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { serviceError } from '../errors.js';

/** Keys dropped while parsing, so no body can reach an object's prototype. */
const POISONED = new Set(['__proto__', 'constructor']);

export function installBodyParser(app: FastifyInstance): void {
  // The demo's clients post nothing: an empty body parses to no body, and routes decide what it means.
  const parseJson = (_request: FastifyRequest, body: string, done: (error: Error | null, value?: unknown) => void) => {
    if (body.trim() === '') return done(null, undefined);
    try {
      done(
        null,
        JSON.parse(body, (key, value: unknown) => (POISONED.has(key) ? undefined : value)),
      );
    } catch (error) {
      done(serviceError('INVALID_JSON', (error as Error).message));
    }
  };
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser(['application/json', 'text/plain'], { parseAs: 'string' }, parseJson);
}
