// The RateLimit-Policy and RateLimit response fields of draft-ietf-httpapi-ratelimit-headers-10, as Structured Fields.
import type { Rate } from '../config.js';
import type { RateDecision } from '../ratelimit/limiter.js';

/** A limit that applies to a request: its policy name and its rate. */
export interface Policy {
  name: 'ingest' | 'read' | 'batch' | 'presence' | 'address' | 'auth';
  rate: Rate;
}

/** A limit that decided on a request (one that refused stops the others from being asked). */
export interface AppliedLimit extends Policy {
  decision: RateDecision;
}

const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000));

/**
 * `"ingest";q=1;w=1`: q requests per window of w seconds. A burst other than q, which GCRA allows
 * back to back, is said in an extension parameter (`burst=100`), which a parser that does not know
 * it ignores, as Structured Fields require.
 */
export function policyField(limits: readonly Policy[]): string {
  return limits
    .map(({ name, rate }) => {
      const burst = rate.burst === rate.count ? '' : `;burst=${rate.burst}`;
      return `"${name}";q=${rate.count};w=${seconds(rate.periodMs)}${burst}`;
    })
    .join(', ');
}

/**
 * `"ingest";r=0;t=1`: r requests left now, t seconds until the quota is whole again, or, when the
 * request was refused, until the next is allowed: the same whole seconds as Retry-After, never fewer.
 */
export function limitField(limits: readonly AppliedLimit[]): string {
  return limits
    .map(({ name, rate, decision }) => {
      if (!decision.allowed) return `"${name}";r=0;t=${seconds(decision.retryAfterMs)}`;
      const intervalMs = rate.periodMs / rate.count;
      // After this request, the quota is whole again in resetMs: each interval of it is one request spent.
      const left = Math.max(0, rate.burst - Math.ceil(decision.resetMs / intervalMs - 1e-9));
      return `"${name}";r=${left};t=${seconds(decision.resetMs)}`;
    })
    .join(', ');
}
