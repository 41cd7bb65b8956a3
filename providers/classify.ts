import {
  isDailyQuota,
  parseDuration,
  type RateLimitDialect,
  readRateHeaders,
  retryAfterMs,
} from "./rate_headers.ts";
import {
  readProviderError,
  saysCorsRefusal,
  saysDailyQuota,
  saysKeyUnfunded,
  saysRequestTooLarge,
} from "./provider_error.ts";

/** What an upstream answer means for the key that got it and for the request. */
export type Outcome =
  | { kind: "success" }
  | {
    kind: "rate_limited";
    retryAfterMs: number | undefined;
    /** The provider's daily cap, not a per-minute limit: the key rests until the day resets. */
    daily?: boolean;
  }
  /** The provider's structured code says the key's account cannot pay: the key rests long. */
  | { kind: "key_rejected"; reason: "unauthorized" | "forbidden" | "quota" }
  /**
   * The provider did not accept the key for this request (401, 403, Gemini's
   * `API_KEY_INVALID`). The request may have caused it, so the key rests only
   * until a probe that carries nothing of the client says whether it is the key.
   */
  | { kind: "key_suspect"; reason: "unauthorized" | "forbidden" }
  | { kind: "upstream_error" }
  | { kind: "client_error" };

/**
 * Classifies an upstream response from its status and the provider's
 * structured error fields (see `provider_error.ts`), never from free text
 * that can echo the request. `body` is the error body text when the status
 * is 400 or more; `dialect` says how to read a 429's headers for a daily cap.
 *
 * - a 400 is never the key's fault (but Gemini's `API_KEY_INVALID` asks for a probe);
 * - 413, and a 429 "Request too large", are the request's fault: nothing rests;
 * - 401 and 403 make the key a suspect (a probe decides), except Anthropic's CORS 401;
 * - 402, and `insufficient_quota` / `billing_error` codes, rest the key long (`quota`);
 * - a Gemini 429 naming a `PerDay` quota id is a daily cap, else its `retryDelay` is the rest.
 */
export function classifyResponse(
  status: number,
  headers: Headers,
  body: string,
  now: number,
  dialect: RateLimitDialect = "none",
): Outcome {
  if (status < 400) return { kind: "success" };
  if (status >= 500) return { kind: "upstream_error" };
  const e = readProviderError(body);
  if (status === 413 || saysRequestTooLarge(e)) return { kind: "client_error" };
  if (status === 400) {
    return e.reasons.includes("API_KEY_INVALID")
      ? { kind: "key_suspect", reason: "unauthorized" }
      : { kind: "client_error" };
  }
  if (status === 402 || saysKeyUnfunded(e)) return { kind: "key_rejected", reason: "quota" };
  if (status === 401) {
    return saysCorsRefusal(e)
      ? { kind: "client_error" }
      : { kind: "key_suspect", reason: "unauthorized" };
  }
  if (status === 403) return { kind: "key_suspect", reason: "forbidden" };
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(headers, now) ?? e.retryDelayMs;
    if (saysDailyQuota(e) || isDailyQuota(body, readRateHeaders(dialect, headers, now))) {
      return { kind: "rate_limited", retryAfterMs, daily: true };
    }
    return { kind: "rate_limited", retryAfterMs };
  }
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
