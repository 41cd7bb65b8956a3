/**
 * What a key's figures say of its pace, in requests (or tokens) per
 * minute: the provider's per-minute limit, a day's count made to last
 * until its reset, the lowest of several. Pure; {@linkcode KeyPacing} uses them.
 *
 * @module
 */
import type { LimitState } from "../providers/rate_headers.ts";

/** A paced rate is rebuilt only when it moves by more than this fraction. */
const RATE_STEP = 0.1;

/** Whether two rates are within RATE_STEP of each other (a paced rate is not rebuilt for less). */
export function near(a: number, b: number): boolean {
  return Math.abs(a - b) <= RATE_STEP * Math.max(a, b);
}

/** The lowest of the figures given (ignoring absent and non-positive ones). */
export function minOf(...xs: (number | undefined)[]): number | undefined {
  let out: number | undefined;
  for (const x of xs) if (x !== undefined && x > 0 && (out === undefined || x < out)) out = x;
  return out;
}

/** A per-minute limit's figure, when the provider stated one. */
export function perMinute(s: LimitState | undefined): number | undefined {
  return s?.window === "minute" ? s.limit : undefined;
}

/**
 * For a day's count, the pace at which what is left lasts until the reset,
 * in requests per minute; undefined for a minute's count, or when the
 * provider did not say both.
 */
export function lastingPerMinute(s: LimitState | undefined, now: number): number | undefined {
  if (s?.window !== "day" || !s.remaining || s.resetAt === undefined || s.resetAt <= now) {
    return undefined;
  }
  return s.remaining / ((s.resetAt - now) / 60_000);
}
