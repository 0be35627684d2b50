// The rate limiter's contract: one decision per request, from a store that may be in memory or shared.
import type { Rate } from '../config.js';

export interface RateDecision {
  allowed: boolean;
  /** When denied: how long until one request would be allowed, in ms. */
  retryAfterMs: number;
  /** Requests still allowed right now after this one. */
  remaining: number;
  /** Until the budget is whole again, in ms. */
  resetMs: number;
}

/**
 * Decides with GCRA (the generic cell rate algorithm): each key holds one number, its theoretical
 * arrival time, so requests are spaced evenly with no double burst at a window edge.
 */
export interface RateLimiterStore {
  /** `localKeys`: true when the state is in this process only (several instances would not share it). */
  readonly localKeys: boolean;
  take(key: string, rate: Rate, nowMs: number): RateDecision | Promise<RateDecision>;
  close?(): Promise<void>;
}

/** One GCRA step: the new theoretical arrival time (or null when denied) and the decision. */
export function gcra(tatMs: number | undefined, rate: Rate, nowMs: number): { tatMs: number | null; decision: RateDecision } {
  const intervalMs = rate.periodMs / rate.count;
  const toleranceMs = intervalMs * (rate.burst - 1);
  const tat = Math.max(tatMs ?? nowMs, nowMs);
  if (tat - nowMs > toleranceMs) {
    return {
      tatMs: null,
      decision: { allowed: false, retryAfterMs: tat - toleranceMs - nowMs, remaining: 0, resetMs: tat - nowMs },
    };
  }
  const next = tat + intervalMs;
  return {
    tatMs: next,
    decision: {
      allowed: true,
      retryAfterMs: 0,
      remaining: Math.max(0, Math.floor((toleranceMs - (next - nowMs) + intervalMs) / intervalMs)),
      resetMs: next - nowMs,
    },
  };
}
