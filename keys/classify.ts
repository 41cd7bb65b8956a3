/** What an upstream answer means for the key that got it and for the request. */
export type Outcome =
  | { kind: "success" }
  | { kind: "rate_limited"; retryAfterMs: number | undefined }
  | { kind: "key_rejected"; reason: "unauthorized" | "forbidden" | "quota" }
  | { kind: "upstream_error" }
  | { kind: "client_error" };

const QUOTA_TEXT =
  /insufficient_quota|billing|credit balance|exceeded your current quota|payment required|insufficient (balance|credits?)/i;

/**
 * Classifies an upstream response. `body` is the error body text when the
 * status is 400 or more (quota errors hide in 400, 402 and 429 bodies).
 */
export function classifyResponse(
  status: number,
  headers: Headers,
  body: string,
  now: number,
): Outcome {
  if (status < 400) return { kind: "success" };
  if (status === 401) return { kind: "key_rejected", reason: "unauthorized" };
  if (status === 403) return { kind: "key_rejected", reason: "forbidden" };
  if (status === 402) return { kind: "key_rejected", reason: "quota" };
  if ((status === 429 || status === 400) && QUOTA_TEXT.test(body)) {
    return { kind: "key_rejected", reason: "quota" };
  }
  if (status === 429) return { kind: "rate_limited", retryAfterMs: parseRetryAfter(headers, now) };
  if (status >= 500) return { kind: "upstream_error" };
  return { kind: "client_error" };
}

/** Parses durations like `1s`, `6m0s`, `20ms`, `1h2m3.5s` (x-ratelimit-reset-*). */
function parseGoDuration(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let matched = "";
  for (const m of text.matchAll(re)) {
    const n = Number(m[1]);
    total += m[2] === "h" ? n * 3_600_000 : m[2] === "m" ? n * 60_000 : m[2] === "s" ? n * 1000 : n;
    matched += m[0];
  }
  return matched.length > 0 && matched === text ? total : undefined;
}

/**
 * How long the upstream asked us to wait, in ms: `retry-after-ms`,
 * `Retry-After` (seconds or an HTTP date), or `x-ratelimit-reset-requests`.
 * Undefined when none is present or readable. Capped at one day.
 */
export function parseRetryAfter(headers: Headers, now: number): number | undefined {
  const cap = (ms: number) => Math.min(Math.max(0, Math.ceil(ms)), 86_400_000);
  const ms = headers.get("retry-after-ms");
  if (ms !== null && /^\s*\d+(\.\d+)?\s*$/.test(ms)) return cap(Number(ms));
  const ra = headers.get("retry-after");
  if (ra !== null) {
    const t = ra.trim();
    if (/^\d+(\.\d+)?$/.test(t)) return cap(Number(t) * 1000);
    const date = Date.parse(t);
    if (!Number.isNaN(date)) return cap(date - now);
  }
  const reset = headers.get("x-ratelimit-reset-requests");
  if (reset !== null) {
    const t = reset.trim();
    if (/^\d+(\.\d+)?$/.test(t)) return cap(Number(t) * 1000);
    const d = parseGoDuration(t);
    if (d !== undefined) return cap(d);
  }
  return undefined;
}

/** Cool-down after the n-th consecutive 429 with no hint: 5 s doubling, at most 60 s. */
export function defaultCooldownMs(strikes: number): number {
  return Math.min(60_000, 5000 * 2 ** Math.max(0, strikes - 1));
}
