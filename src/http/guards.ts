// Per-request checks shared by the routes: who is calling, the API token, and the rate limits.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { Config, Rate } from '../config.js';
import { serviceError } from '../errors.js';
import {
  addressIdentity,
  identityOf,
  parseClientAddress,
  type ClientAddress,
  type Pseudonymizer,
} from '../identity.js';
import { gcra, type RateLimiterStore } from '../ratelimit/limiter.js';
import { limitField, policyField, type AppliedLimit, type Policy } from './ratelimit-headers.js';

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
    /** The caller's address and its block, parsed once for the whole request (ipaddr.js takes 0.6 to 4 µs a parse). */
    clientAddress: ClientAddress | null;
  }
}

/**
 * `batch`: client ids of batch ingest per second, each request spending as many units as it names ids; `presence`:
 * client ids looked up per second, the same way.
 */
export type Budget = 'ingest' | 'read' | 'batch' | 'presence';
const BUDGETS: readonly Budget[] = ['ingest', 'read', 'batch', 'presence'];

/**
 * `token`: the API token when one is configured; `ingest`: the ingest or the API token, off without either;
 * `admin`: the API token, off without it (routes that act, or that no one should reach unconfigured).
 */
export type Credential = 'token' | 'ingest' | 'admin';

export interface Guards {
  /** `ignoreBody`: the body's client_id does not name the caller (batch ingest, where it names others). */
  callerOf(request: FastifyRequest, options?: { ignoreBody?: boolean }): Caller;
  requireCredential(credential: Credential, request: FastifyRequest, reply: FastifyReply): void;
  /** Spends `cost` units of the caller's `budget` (and one of its address block's cap), or answers 429. */
  rateLimit(budget: Budget, request: FastifyRequest, reply: FastifyReply, cost?: number): Promise<void>;
  /** Drops what the limiter holds of an identity (a pseudonym) in every budget: for erasure. */
  forget(identities: readonly string[]): Promise<void>;
}

/**
 * Wrong tokens an address block (IPv4 address or IPv6 /64) may send: 20 back to back, then 10 a
 * minute. Past it, every request from that block that needs a token is refused before its token is
 * compared, so guessing proceeds at 10 a minute however fast the guesses come. Counted in each
 * process (LRU-bounded), not shared: N instances allow N times as many guesses, which against a
 * token of 32 random characters is still none that matter.
 */
export const AUTH_FAILURE_RATE: Rate = { count: 10, periodMs: 60_000, burst: 20 };
const AUTH_FAILURE_MAX_BLOCKS = 10_000;

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
  const ingestDigest = config.ingestToken === null ? null : digest(config.ingestToken);
  const rates: Record<Budget, Rate | null> = {
    ingest: config.ingestRateLimit,
    read: config.readRateLimit,
    batch: config.batchRateLimit,
    presence: config.presenceRateLimit,
  };
  const authFailures = new LRUCache<string, number>({ max: AUTH_FAILURE_MAX_BLOCKS });

  const addressOf = (request: FastifyRequest): ClientAddress => {
    if (request.clientAddress !== null) return request.clientAddress;
    // Fastify's request.ip is the socket's address, or what a trusted proxy forwarded: undefined once
    // the socket is gone, and any text a proxy sent. Neither may become an identity.
    const address = parseClientAddress(request.ip);
    if (address !== null) return (request.clientAddress = address);
    if (request.ip === undefined) throw serviceError('CONNECTION_CLOSED');
    throw serviceError('INVALID_FORWARDED_FOR', JSON.stringify(request.ip));
  };

  const callerOf = (request: FastifyRequest, options?: { ignoreBody?: boolean }): Caller => {
    if (request.caller) return request.caller;
    const { address } = addressOf(request);
    const body = options?.ignoreBody ? undefined : (request.body as { client_id?: unknown } | undefined | null);
    const fromBody =
      body && typeof body === 'object' && typeof body.client_id === 'string' ? body.client_id : undefined;
    const header = request.headers['x-client-id'];
    const clientId = fromBody ?? (typeof header === 'string' ? header : undefined);
    const caller = { address, clientId, identity: pseudonymizer.pseudonym(identityOf(clientId, address)) };
    request.caller = caller;
    return caller;
  };

  /**
   * The pseudonym of the caller's address block. An IPv4 caller without a client id is its own block: its pseudonym
   * is the caller's, already made, so the heartbeat of such a client computes one HMAC rather than two.
   */
  const blockPseudonym = (caller: Caller | null, request: FastifyRequest): string => {
    const { address, block } = addressOf(request);
    if (caller !== null && caller.clientId === undefined && block === address) return caller.identity;
    return pseudonymizer.pseudonym(addressIdentity(block));
  };

  /** The limits that applied go out on every answer, allowed or not, so clients can pace themselves. */
  // The policies of each budget never change: their field is spelt once, not on every heartbeat.
  const policyOf = (budget: Budget): string | null => {
    const policies: Policy[] = [];
    if (rates[budget] !== null) policies.push({ name: budget, rate: rates[budget] });
    if (config.addressRateLimit !== null) policies.push({ name: 'address', rate: config.addressRateLimit });
    return policies.length === 0 ? null : policyField(policies);
  };
  const policyFields: Record<Budget, string | null> = {
    ingest: policyOf('ingest'),
    read: policyOf('read'),
    batch: policyOf('batch'),
    presence: policyOf('presence'),
  };
  const authPolicyField = policyField([{ name: 'auth', rate: AUTH_FAILURE_RATE }]);

  const announce = (reply: FastifyReply, policy: string | null, limits: readonly AppliedLimit[]): void => {
    if (policy === null) return;
    reply.header('ratelimit-policy', policy);
    reply.header('ratelimit', limitField(limits));
  };

  const deny = (
    reply: FastifyReply,
    policy: string | null,
    limits: readonly AppliedLimit[],
    retryAfterMs: number,
  ): never => {
    const retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
    announce(reply, policy, limits);
    reply.header('retry-after', String(retryAfterSeconds));
    throw serviceError('RATE_LIMITED', retryAfterSeconds);
  };

  /** The address block's key in `authFailures`: the pseudonym, so no raw address is held. */
  const blockOf = (request: FastifyRequest): string =>
    pseudonymizer.pseudonym(addressIdentity(addressOf(request).block));

  return {
    callerOf,
    requireCredential(credential, request, reply) {
      const accepted = credential === 'ingest' ? [tokenDigest, ingestDigest] : [tokenDigest];
      if (accepted.every((candidate) => candidate === null)) {
        if (credential === 'token') return;
        throw serviceError(credential === 'admin' ? 'TOKEN_NOT_CONFIGURED' : 'BATCH_INGEST_OFF');
      }
      const block = blockOf(request);
      const now = nowMs();
      const failures = authFailures.get(block);
      // Over its budget of wrong tokens, the block is refused before the token is even compared.
      const next = gcra(failures, AUTH_FAILURE_RATE, now);
      if (!next.decision.allowed) {
        const limit = { name: 'auth', rate: AUTH_FAILURE_RATE, decision: next.decision } as const;
        deny(reply, authPolicyField, [limit], next.decision.retryAfterMs);
      }
      const header = request.headers.authorization;
      // The scheme is case-insensitive (RFC 9110 section 11.1): "bearer" is as good as "Bearer".
      const match = typeof header === 'string' ? /^bearer[ \t]+(.*)$/i.exec(header) : null;
      const given = digest(match?.[1]?.trim() ?? '');
      // Digests have equal length, so each comparison takes the same time whatever the token.
      let valid = false;
      for (const candidate of accepted) if (candidate !== null && timingSafeEqual(given, candidate)) valid = true;
      if (valid) return;
      authFailures.set(block, next.tatMs as number);
      throw serviceError('UNAUTHORIZED');
    },
    async rateLimit(budget, request, reply, cost = 1) {
      const rate = rates[budget];
      // The caller's pseudonym (an HMAC) only when its own budget is limited: a read with --read-rate-limit off
      // needs no more than its address.
      const caller = rate === null ? null : callerOf(request);
      const now = nowMs();
      const policy = policyFields[budget];
      const limits: AppliedLimit[] = [];
      if (rate !== null && caller !== null) {
        const pending = limiter.take(limiterKey(budget, caller.identity), rate, now, cost);
        // The in-process limiter decides at once: no turn of the microtask queue for it.
        const decision = pending instanceof Promise ? await pending : pending;
        limits.push({ name: budget, rate, decision });
        if (!decision.allowed) deny(reply, policy, limits, decision.retryAfterMs);
      }
      // Every caller's address block has a cap too: clients that name themselves could rotate ids,
      // and clients that do not could rotate IPv6 addresses inside their /64, to escape their own limit.
      if (config.addressRateLimit !== null) {
        const key = limiterKey('addr', blockPseudonym(caller, request));
        const pending = limiter.take(key, config.addressRateLimit, now);
        const decision = pending instanceof Promise ? await pending : pending;
        limits.push({ name: 'address', rate: config.addressRateLimit, decision });
        if (!decision.allowed) deny(reply, policy, limits, decision.retryAfterMs);
      }
      announce(reply, policy, limits);
    },
    forget(identities) {
      return limiter.forget(identities.flatMap((identity) => BUDGETS.map((budget) => limiterKey(budget, identity))));
    },
  };
}
