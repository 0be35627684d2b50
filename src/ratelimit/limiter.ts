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
  take(key: string, rate: Rate, nowMs: number): RateDecision | Promise<RateDecision>;
}

/** One GCRA step: the new theoretical arrival time (or null when denied) and the decision. */
export function gcra(
  tatMs: number | undefined,
  rate: Rate,
  nowMs: number,
): { tatMs: number | null; decision: RateDecision } {
  const intervalMs = rate.periodMs / rate.count;
  const toleranceMs = intervalMs * (rate.burst - 1);
  const tat = Math.max(tatMs ?? nowMs, nowMs);
  if (tat - nowMs > toleranceMs) {
    return { tatMs: null, decision: { allowed: false, retryAfterMs: tat - toleranceMs - nowMs, resetMs: tat - nowMs } };
  }
  const next = tat + intervalMs;
  return { tatMs: next, decision: { allowed: true, retryAfterMs: 0, resetMs: next - nowMs } };
}
