import assert from "node:assert/strict";
import { isDailyQuota, parseDuration, readRateHeaders } from "../../providers/rate_headers.ts";

const NOW = Date.UTC(2026, 10, 29, 12, 0, 0);

Deno.test("parseDuration: Go durations, plain seconds, and nothing for what does not parse", () => {
  assert.equal(parseDuration("6m0s"), 360_000);
  assert.equal(parseDuration("2m59.56s"), 179_560);
  assert.equal(parseDuration("120ms"), 120);
  assert.equal(parseDuration("1s"), 1000);
  assert.equal(parseDuration("1h2m"), 3_720_000);
  assert.equal(parseDuration("7.66s"), 7660);
  assert.equal(parseDuration("11.382867097854614"), 11_383);
  assert.equal(parseDuration("30"), 30_000);
  for (const bad of ["-1", "", "soon", "5 minutes", "1d", "m", null]) {
    assert.equal(parseDuration(bad), undefined, String(bad));
  }
});

Deno.test("openai dialect: requests and tokens per minute, resets as durations", () => {
  const h = new Headers({
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-reset-tokens": "6m0s",
  });
  assert.deepEqual(readRateHeaders("openai", h, NOW), {
    requests: { window: "minute", limit: 60, remaining: 59, resetAt: NOW + 1000 },
    tokens: { window: "minute", limit: 150000, remaining: 149984, resetAt: NOW + 360_000 },
  });
});

Deno.test("groq dialect: the same names, but requests count per day; retry-after on a 429", () => {
  const h = new Headers({
    "x-ratelimit-limit-requests": "14400",
    "x-ratelimit-limit-tokens": "18000",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-remaining-tokens": "17997",
    "x-ratelimit-reset-requests": "2m59.56s",
    "x-ratelimit-reset-tokens": "7.66s",
    "retry-after": "2",
  });
  const s = readRateHeaders("groq", h, NOW);
  assert.deepEqual(s.requests, {
    window: "day",
    limit: 14400,
    remaining: 0,
    resetAt: NOW + 179_560,
  });
  assert.deepEqual(s.tokens, {
    window: "minute",
    limit: 18000,
    remaining: 17997,
    resetAt: NOW + 7660,
  });
  assert.equal(s.retryAfterMs, 2000);
  assert.equal(isDailyQuota("", s), true);
});

Deno.test("cerebras dialect: requests per day and tokens per minute, resets in float seconds", () => {
  const h = new Headers({
    "x-ratelimit-limit-requests-day": "14400",
    "x-ratelimit-limit-tokens-minute": "60000",
    "x-ratelimit-remaining-requests-day": "14399",
    "x-ratelimit-remaining-tokens-minute": "59000",
    "x-ratelimit-reset-requests-day": "33011.382867097855",
    "x-ratelimit-reset-tokens-minute": "11.382867097854614",
  });
  assert.deepEqual(readRateHeaders("cerebras", h, NOW), {
    requests: { window: "day", limit: 14400, remaining: 14399, resetAt: NOW + 33_011_383 },
    tokens: { window: "minute", limit: 60000, remaining: 59000, resetAt: NOW + 11_383 },
  });
});

Deno.test("anthropic dialect: four limits, resets as RFC 3339 instants", () => {
  const h = new Headers({
    "anthropic-ratelimit-requests-limit": "1000",
    "anthropic-ratelimit-requests-remaining": "999",
    "anthropic-ratelimit-requests-reset": "2026-11-29T12:00:01Z",
    "anthropic-ratelimit-tokens-limit": "2400000",
    "anthropic-ratelimit-tokens-remaining": "2399000",
    "anthropic-ratelimit-tokens-reset": "2026-11-29T12:00:00.500Z",
    "anthropic-ratelimit-input-tokens-limit": "2000000",
    "anthropic-ratelimit-input-tokens-remaining": "2000000",
    "anthropic-ratelimit-input-tokens-reset": "2026-11-29T12:00:00Z",
    "anthropic-ratelimit-output-tokens-limit": "400000",
    "anthropic-ratelimit-output-tokens-remaining": "399000",
    "anthropic-ratelimit-output-tokens-reset": "2026-11-29T12:00:02+00:00",
  });
  const s = readRateHeaders("anthropic", h, NOW);
  assert.deepEqual(s.requests, {
    window: "minute",
    limit: 1000,
    remaining: 999,
    resetAt: NOW + 1000,
  });
  assert.equal(s.tokens?.resetAt, NOW + 500);
  assert.equal(s.inputTokens?.remaining, 2_000_000);
  assert.equal(s.outputTokens?.resetAt, NOW + 2000);
});

Deno.test("malformed values are left out, never an error; retry-after-ms wins, an HTTP date counts from now", () => {
  const h = new Headers({
    "x-ratelimit-limit-requests": "sixty",
    "x-ratelimit-remaining-requests": "-3",
    "x-ratelimit-reset-requests": "later",
    "x-ratelimit-remaining-tokens": "12.5",
    "x-ratelimit-reset-tokens": "5s",
    "anthropic-ratelimit-requests-reset": "not a time",
    "retry-after": "Sun, 29 Nov 2026 12:00:30 GMT",
  });
  assert.deepEqual(readRateHeaders("openai", h, NOW), {
    tokens: { window: "minute", resetAt: NOW + 5000 },
    retryAfterMs: 30_000,
  });
  assert.deepEqual(readRateHeaders("anthropic", h, NOW), { retryAfterMs: 30_000 });
  const both = new Headers({ "retry-after": "9", "retry-after-ms": "250" });
  assert.equal(readRateHeaders("none", both, NOW).retryAfterMs, 250);
  assert.deepEqual(readRateHeaders("none", new Headers({ "retry-after": "soon" }), NOW), {});
});

Deno.test("isDailyQuota: the 429 bodies that name a daily cap, and not a per-minute one", () => {
  const gemini = JSON.stringify({
    error: {
      code: 429,
      status: "RESOURCE_EXHAUSTED",
      details: [{
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        violations: [{
          quotaId: "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
          quotaValue: "250",
        }],
      }, { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "0s" }],
    },
  });
  const geminiMinute = gemini.replace("PerDay", "PerMinute");
  const openrouter = JSON.stringify({
    error: {
      code: 429,
      message: "Rate limit exceeded: free-models-per-day",
      metadata: { limit_source: "openrouter_free_tier_daily" },
    },
  });
  const anthropic = JSON.stringify({
    type: "error",
    error: { type: "rate_limit_error", details: { error_code: "enforced_spend_limit_reached" } },
  });
  assert.equal(isDailyQuota(gemini, {}), true);
  assert.equal(isDailyQuota(geminiMinute, {}), false);
  assert.equal(isDailyQuota(openrouter, {}), true);
  assert.equal(isDailyQuota(anthropic, {}), true);
  assert.equal(isDailyQuota('{"error":{"message":"Rate limit reached for requests"}}', {}), false);
});
