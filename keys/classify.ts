import {
  isDailyQuota,
  parseDuration,
  type RateLimitDialect,
  readRateHeaders,
  retryAfterMs,
} from "./rate_headers.ts";

/** What an upstream answer means for the key that got it and for the request. */
export type Outcome =
  | { kind: "success" }
  | {
    kind: "rate_limited";
    retryAfterMs: number | undefined;
    /** The provider's daily cap, not a per-minute limit: the key rests until the day resets. */
    daily?: boolean;
  }
  | { kind: "key_rejected"; reason: "unauthorized" | "forbidden" | "quota" }
  | { kind: "upstream_error" }
  | { kind: "client_error" };

const QUOTA_TEXT =
  /insufficient_quota|billing|credit balance|exceeded your current quota|payment required|insufficient (balance|credits?)/i;

/**
 * Classifies an upstream response. `body` is the error body text when the
 * status is 400 or more (quota errors hide in 400, 402 and 429 bodies);
 * `dialect` says how to read a 429's headers for a daily cap.
 */
export function classifyResponse(
  status: number,
  headers: Headers,
  body: string,
  now: number,
  dialect: RateLimitDialect = "none",
): Outcome {
  if (status < 400) return { kind: "success" };
  if (status === 401) return { kind: "key_rejected", reason: "unauthorized" };
  if (status === 403) return { kind: "key_rejected", reason: "forbidden" };
  if (status === 402) return { kind: "key_rejected", reason: "quota" };
  if ((status === 429 || status === 400) && QUOTA_TEXT.test(body)) {
    return { kind: "key_rejected", reason: "quota" };
  }
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(headers, now);
    if (isDailyQuota(body, readRateHeaders(dialect, headers, now))) {
      return { kind: "rate_limited", retryAfterMs, daily: true };
    }
    return { kind: "rate_limited", retryAfterMs };
  }
  if (status >= 500) return { kind: "upstream_error" };
  return { kind: "client_error" };
}

/**
 * How long the upstream asked us to wait, in ms: `retry-after-ms`,
 * `Retry-After` (seconds or an HTTP date), or `x-ratelimit-reset-requests`.
 * Undefined when none is present or readable. Capped at one day.
 */
export function parseRetryAfter(headers: Headers, now: number): number | undefined {
  const cap = (ms: number) => Math.min(Math.max(0, Math.ceil(ms)), 86_400_000);
  const asked = retryAfterMs(headers, now);
  if (asked !== undefined) return cap(asked);
  const reset = parseDuration(headers.get("x-ratelimit-reset-requests"));
  return reset === undefined ? undefined : cap(reset);
}

/** Cool-down after the n-th consecutive 429 with no hint: 5 s doubling, at most 60 s. */
export function defaultCooldownMs(strikes: number): number {
  return Math.min(60_000, 5000 * 2 ** Math.max(0, strikes - 1));
}
