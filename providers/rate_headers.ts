/**
 * What a provider's answer says of a key's limits, read from its headers
 * (and, for a 429, its body), in each provider's dialect. Pure functions:
 * a value that does not parse is left out, never an error. See
 * `../shared/provider_limits.md` for the sources of every format here.
 *
 * Not yet wired into the request path (issue 15): `attempt.ts`'s
 * `tryOnce`, where every upstream answer is classified, is where these
 * signals will be folded into a key's shared state.
 *
 * @module
 */

/** How a service's provider names its rate-limit headers. */
export type RateLimitDialect = "openai" | "groq" | "cerebras" | "anthropic" | "none";

/** The window a provider's count refers to. */
export type LimitWindow = "minute" | "day";

/** One limit as the provider states it on an answer. */
export interface LimitState {
  /** What the window grants. */
  limit?: number;
  /** What is left of it. */
  remaining?: number;
  /** Epoch ms at which the provider says the count is back in full. */
  resetAt?: number;
  window: LimitWindow;
}

/** Everything an answer says of its key's limits. */
export interface RateSignal {
  requests?: LimitState;
  tokens?: LimitState;
  /** Anthropic's separate input and output token limits. */
  inputTokens?: LimitState;
  outputTokens?: LimitState;
  /** `retry-after-ms`, or `retry-after` (seconds or an HTTP date), in ms from now. */
  retryAfterMs?: number;
}

const GO_DURATION =
  /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$/;
const NUMBER = /^\d+(?:\.\d+)?$/;

/**
 * A reset given as a duration: Go style (`6m0s`, `2m59.56s`, `120ms`,
 * `1h2m`) or plain seconds (`11.38`, Cerebras; `30`, Azure). In ms, or
 * undefined when it does not parse (or is negative, as Azure's `-1`).
 */
export function parseDuration(value: string | null): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (v === "") return undefined;
  if (NUMBER.test(v)) return Math.round(Number(v) * 1000);
  const m = GO_DURATION.exec(v);
  if (!m || (!m[1] && !m[2] && !m[3] && !m[4])) return undefined;
  const [h, min, s, ms] = [m[1], m[2], m[3], m[4]].map((x) => (x ? Number(x) : 0));
  return Math.round(((h * 60 + min) * 60 + s) * 1000 + ms);
}

/** A non-negative integer count, or undefined. */
function count(value: string | null): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  return /^\d+$/.test(v) ? Number(v) : undefined;
}

/** An RFC 3339 instant as epoch ms, or undefined. */
function instant(value: string | null): number | undefined {
  if (value === null || !/^\d{4}-\d{2}-\d{2}T/.test(value.trim())) return undefined;
  const t = Date.parse(value.trim());
  return Number.isFinite(t) ? t : undefined;
}

/** `retry-after-ms`, else `retry-after` (delay-seconds or an HTTP date), in ms from `now`. */
export function retryAfterMs(headers: Headers, now: number): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && NUMBER.test(ms.trim())) return Math.round(Number(ms.trim()));
  const after = headers.get("retry-after");
  if (after === null) return undefined;
  const v = after.trim();
  if (NUMBER.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isFinite(at) && /[a-z]/i.test(v) ? Math.max(0, at - now) : undefined;
}

/** A limit from three header values; undefined when none of them parses. */
function limitFrom(
  limit: number | undefined,
  remaining: number | undefined,
  resetAt: number | undefined,
  window: LimitWindow,
): LimitState | undefined {
  if (limit === undefined && remaining === undefined && resetAt === undefined) return undefined;
  const out: LimitState = { window };
  if (limit !== undefined) out.limit = limit;
  if (remaining !== undefined) out.remaining = remaining;
  if (resetAt !== undefined) out.resetAt = resetAt;
  return out;
}

/** `x-ratelimit-{limit,remaining,reset}-<suffix>`, the reset a duration from `now`. */
function durationLimit(h: Headers, suffix: string, window: LimitWindow, now: number) {
  const reset = parseDuration(h.get(`x-ratelimit-reset-${suffix}`));
  return limitFrom(
    count(h.get(`x-ratelimit-limit-${suffix}`)),
    count(h.get(`x-ratelimit-remaining-${suffix}`)),
    reset === undefined ? undefined : now + reset,
    window,
  );
}

/** `anthropic-ratelimit-<kind>-{limit,remaining,reset}`, the reset an RFC 3339 instant. */
function anthropicLimit(h: Headers, kind: string): LimitState | undefined {
  return limitFrom(
    count(h.get(`anthropic-ratelimit-${kind}-limit`)),
    count(h.get(`anthropic-ratelimit-${kind}-remaining`)),
    instant(h.get(`anthropic-ratelimit-${kind}-reset`)),
    "minute",
  );
}

/**
 * One header each dialect sends whenever it sends any: an answer without
 * it is passed over with one lookup (most answers of a provider that sends
 * none, and every answer of the mock in the benchmarks).
 */
const MARKER: Record<RateLimitDialect, string> = {
  openai: "x-ratelimit-remaining-requests",
  groq: "x-ratelimit-remaining-requests",
  cerebras: "x-ratelimit-remaining-requests-day",
  anthropic: "anthropic-ratelimit-requests-remaining",
  none: "",
};

/**
 * Whether an answer may carry the dialect's rate-limit headers: its marker
 * (see MARKER), or a tokens count that some answers send alone.
 */
export function carriesRateHeaders(headers: Headers, dialect: RateLimitDialect): boolean {
  return headers.has(MARKER[dialect]) || headers.has("x-ratelimit-remaining-tokens");
}

/**
 * What an answer's headers say of its key's limits, read as `dialect`:
 *
 * - `openai`: `x-ratelimit-*-requests` and `*-tokens`, both per minute;
 * - `groq`: the same names, but `*-requests` counts per day;
 * - `cerebras`: `*-requests-day` and `*-tokens-minute`, resets in seconds;
 * - `anthropic`: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-*`;
 * - `none`: only `retry-after` / `retry-after-ms`, read in every dialect.
 */
export function readRateHeaders(
  dialect: RateLimitDialect,
  headers: Headers,
  now: number,
): RateSignal {
  const out: RateSignal = {};
  const set = <K extends keyof RateSignal>(k: K, v: RateSignal[K] | undefined) => {
    if (v !== undefined) out[k] = v;
  };
  if (dialect === "openai" || dialect === "groq") {
    set("requests", durationLimit(headers, "requests", dialect === "groq" ? "day" : "minute", now));
    set("tokens", durationLimit(headers, "tokens", "minute", now));
  } else if (dialect === "cerebras") {
    set(
      "requests",
      durationLimit(headers, "requests-day", "day", now) ??
        durationLimit(headers, "requests-minute", "minute", now),
    );
    set("tokens", durationLimit(headers, "tokens-minute", "minute", now));
  } else if (dialect === "anthropic") {
    set("requests", anthropicLimit(headers, "requests"));
    set("tokens", anthropicLimit(headers, "tokens"));
    set("inputTokens", anthropicLimit(headers, "input-tokens"));
    set("outputTokens", anthropicLimit(headers, "output-tokens"));
  }
  set("retryAfterMs", retryAfterMs(headers, now));
  return out;
}

/**
 * Whether a 429 is a daily cap rather than a per-minute limit, from what the
 * provider says: a Gemini quota id containing `PerDay`, OpenRouter's daily
 * free-tier limits, Anthropic's spend limit, or a day's count at 0 in the
 * headers (Groq, Cerebras).
 */
export function isDailyQuota(body: string, signal: RateSignal): boolean {
  if (signal.requests?.window === "day" && signal.requests.remaining === 0) return true;
  return /PerDay|per[ _-]day|free-models-per-day|limit_rpd|openrouter_free_tier_daily|enforced_spend_limit_reached|spend limit/i
    .test(body);
}
