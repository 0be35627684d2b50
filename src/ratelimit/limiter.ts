// The rate limiter's contract: one decision per request, from a store that may be in memory or shared.
import type { Rate } from '../config.js';

export interface RateDecision {
  allowed: boolean;
  /** When denied: how long until one request would be allowed, in ms. */
  retryAfterMs: number;
  /** Until the budget is whole again, in ms. */
  resetMs: number;
}

/**
 * Decides with GCRA (the generic cell rate algorithm): each key holds one number, its theoretical
 * arrival time, so requests are spaced evenly with no double burst at a window edge.
 */
export interface RateLimiterStore {
  /** `cost`: how many of the rate's units this request spends (ids of a batch, days of a wide read); 1 by default. */
  take(key: string, rate: Rate, nowMs: number, cost?: number): RateDecision | Promise<RateDecision>;
  /** Drops the state of these keys (an erased identity's budgets): resolves once it is gone. */
  forget(keys: readonly string[]): Promise<void>;
}

/**
 * One GCRA step: the new theoretical arrival time (or null when denied) and the decision.
 *
 * A request of `cost` units is allowed when that many are left of the burst; one costing more than
 * the whole burst is allowed only when the budget is whole, and leaves the caller in debt for the
 * rest (its next request waits until it is paid). Otherwise a batch larger than the burst could
 * never pass, or would pass for the price of one.
 */
export function gcra(
  tatMs: number | undefined,
  rate: Rate,
  nowMs: number,
  cost = 1,
): { tatMs: number | null; decision: RateDecision } {
  const intervalMs = rate.periodMs / rate.count;
  const toleranceMs = Math.max(0, intervalMs * (rate.burst - cost));
  const tat = Math.max(tatMs ?? nowMs, nowMs);
  if (tat - nowMs > toleranceMs) {
    return { tatMs: null, decision: { allowed: false, retryAfterMs: tat - toleranceMs - nowMs, resetMs: tat - nowMs } };
  }
  const next = tat + intervalMs * cost;
  return { tatMs: next, decision: { allowed: true, retryAfterMs: 0, resetMs: next - nowMs } };
}
