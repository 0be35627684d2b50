// Per-request checks shared by the routes: who is calling, the API token, and the rate limits.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config, Rate } from '../config.js';
import { serviceError } from '../errors.js';
import { addressBlockIdentity, canonicalAddress, identityOf, type Pseudonymizer } from '../identity.js';
import type { RateLimiterStore } from '../ratelimit/limiter.js';

export interface Caller {
  /** The caller's address (socket, or X-Forwarded-For past trusted proxies), normalised. */
  address: string;
  /** The client's own id when it sent one. */
  clientId: string | undefined;
  /** The pseudonym of the identity (client id, else address). */
  identity: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller | null;
  }
}

export type Budget = 'ingest' | 'read';

export interface Guards {
  /** `ignoreBody`: the body's client_id does not name the caller (batch ingest, where it names others). */
  callerOf(request: FastifyRequest, options?: { ignoreBody?: boolean }): Caller;
  requireToken(request: FastifyRequest): void;
  rateLimit(budget: Budget, request: FastifyRequest, reply: FastifyReply): Promise<void>;
}

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();

/** The limiter's key of a budget of one identity (a pseudonym): `ingest:…`, `read:…`, `addr:…`. */
const limiterKey = (budget: Budget | 'addr', pseudonym: string): string => `${budget}:${pseudonym}`;

export function createGuards(
  config: Readonly<Config>,
  limiter: RateLimiterStore,
  pseudonymizer: Pseudonymizer,
  nowMs: () => number,
): Guards {
  const tokenDigest = config.apiToken === null ? null : digest(config.apiToken);
  const rates: Record<Budget, Rate | null> = { ingest: config.ingestRateLimit, read: config.readRateLimit };

  const callerOf = (request: FastifyRequest, options?: { ignoreBody?: boolean }): Caller => {
    if (request.caller) return request.caller;
    // Fastify's request.ip is the socket's address, or what a trusted proxy forwarded: undefined once
    // the socket is gone, and any text a proxy sent. Neither may become an identity.
    const address = canonicalAddress(request.ip);
    if (address === null) {
      if (request.ip === undefined) throw serviceError('CONNECTION_CLOSED');
      throw serviceError('INVALID_FORWARDED_FOR', JSON.stringify(request.ip));
    }
    const body = options?.ignoreBody ? undefined : (request.body as { client_id?: unknown } | undefined | null);
    const fromBody =
      body && typeof body === 'object' && typeof body.client_id === 'string' ? body.client_id : undefined;
    const header = request.headers['x-client-id'];
    const clientId = fromBody ?? (typeof header === 'string' ? header : undefined);
    const caller = { address, clientId, identity: pseudonymizer.pseudonym(identityOf(clientId, address)) };
    request.caller = caller;
    return caller;
  };

  const deny = (reply: FastifyReply, rate: Rate, retryAfterMs: number, resetMs: number): never => {
    const retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
    const windowSeconds = Math.max(1, Math.ceil(rate.periodMs / 1000));
    reply.header('retry-after', String(retryAfterSeconds));
    reply.header('ratelimit-policy', `${rate.count};w=${windowSeconds}`);
    reply.header('ratelimit', `limit=${rate.count}, remaining=0, reset=${Math.max(1, Math.ceil(resetMs / 1000))}`);
    throw serviceError('RATE_LIMITED', retryAfterSeconds);
  };

  return {
    callerOf,
    requireToken(request) {
      if (tokenDigest === null) return;
      const header = request.headers.authorization;
      // The scheme is case-insensitive (RFC 9110 section 11.1): "bearer" is as good as "Bearer".
      const match = typeof header === 'string' ? /^bearer[ \t]+(.*)$/i.exec(header) : null;
      const token = match?.[1]?.trim() ?? '';
      // Digests have equal length, so the comparison takes the same time whatever the token.
      if (!timingSafeEqual(digest(token), tokenDigest)) throw serviceError('UNAUTHORIZED');
    },
    async rateLimit(budget, request, reply) {
      const rate = rates[budget];
      const caller = callerOf(request);
      const now = nowMs();
      if (rate !== null) {
        const decision = await limiter.take(limiterKey(budget, caller.identity), rate, now);
        if (!decision.allowed) deny(reply, rate, decision.retryAfterMs, decision.resetMs);
      }
      // Every caller's address block has a cap too: clients that name themselves could rotate ids,
      // and clients that do not could rotate IPv6 addresses inside their /64, to escape their own limit.
      if (config.addressRateLimit !== null) {
        const key = limiterKey('addr', pseudonymizer.pseudonym(addressBlockIdentity(caller.address)));
        const decision = await limiter.take(key, config.addressRateLimit, now);
        if (!decision.allowed) deny(reply, config.addressRateLimit, decision.retryAfterMs, decision.resetMs);
      }
    },
  };
}
