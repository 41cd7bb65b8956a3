import assert from "node:assert/strict";
import { classifyResponse, defaultCooldownMs, parseRetryAfter } from "../../providers/mod.ts";
import { gemini429Body } from "../support/provider_answers.ts";

const h = (o: Record<string, string>) => new Headers(o);

Deno.test("parseRetryAfter() reads seconds, HTTP dates, retry-after-ms and x-ratelimit-reset-requests", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.deepEqual(parseRetryAfter(h({ "retry-after": "3" }), now), 3000);
  assert.deepEqual(
    parseRetryAfter(h({ "retry-after": "Thu, 01 Jan 2026 00:00:10 GMT" }), now),
    10_000,
  );
  assert.deepEqual(parseRetryAfter(h({ "retry-after-ms": "250" }), now), 250);
  assert.deepEqual(parseRetryAfter(h({ "x-ratelimit-reset-requests": "6m0s" }), now), 360_000);
  assert.deepEqual(parseRetryAfter(h({ "x-ratelimit-reset-requests": "1.5s" }), now), 1500);
  assert.deepEqual(parseRetryAfter(h({ "x-ratelimit-reset-requests": "20ms" }), now), 20);
  assert.deepEqual(parseRetryAfter(h({ "retry-after": "soon" }), now), undefined);
  assert.deepEqual(parseRetryAfter(h({}), now), undefined);
});

Deno.test("classifyResponse() sorts answers into what they mean for the key", () => {
  const none = h({});
  assert.deepEqual(classifyResponse(200, none, "", 0).kind, "success");
  assert.deepEqual(classifyResponse(401, none, "", 0), {
    kind: "key_suspect",
    reason: "unauthorized",
  });
  assert.deepEqual(classifyResponse(403, none, "", 0), {
    kind: "key_suspect",
    reason: "forbidden",
  });
  assert.deepEqual(classifyResponse(402, none, "", 0), { kind: "key_rejected", reason: "quota" });
  assert.deepEqual(
    classifyResponse(429, none, '{"error":{"code":"insufficient_quota"}}', 0).kind,
    "key_rejected",
  );
  assert.deepEqual(
    classifyResponse(400, none, '{"type":"error","error":{"type":"billing_error"}}', 0).kind,
    "client_error",
    "a 400 is never the key's fault",
  );
  assert.deepEqual(classifyResponse(429, h({ "retry-after": "2" }), "", 0), {
    kind: "rate_limited",
    retryAfterMs: 2000,
  });
  assert.deepEqual(classifyResponse(503, none, "", 0).kind, "upstream_error");
  assert.deepEqual(classifyResponse(400, none, "bad model", 0).kind, "client_error");
  assert.deepEqual(classifyResponse(404, none, "", 0).kind, "client_error");
});

// The bodies below are the providers' own (security_review.md H1; provider_limits.md).
const OPENAI_UNKNOWN_FIELD = JSON.stringify({
  error: {
    message: "Unrecognized request argument supplied: insufficient_quota",
    type: "invalid_request_error",
    param: null,
    code: null,
  },
});
const OPENAI_TOO_LARGE = JSON.stringify({
  error: {
    message:
      "Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 200000. The input or output tokens must be reduced in order to run successfully.",
    type: "tokens",
    param: null,
    code: "rate_limit_exceeded",
  },
});
const ANTHROPIC_CORS = JSON.stringify({
  type: "error",
  error: {
    type: "authentication_error",
    message: "CORS requests must set 'anthropic-dangerous-direct-browser-access' header",
  },
});

const GEMINI_BAD_KEY = JSON.stringify({
  error: {
    code: 400,
    message: "API key not valid. Please pass a valid API key.",
    status: "INVALID_ARGUMENT",
    details: [{
      "@type": "type.googleapis.com/google.rpc.ErrorInfo",
      reason: "API_KEY_INVALID",
      domain: "googleapis.com",
    }],
  },
});

Deno.test("classifyResponse(): text a client can make the provider echo blames no key", () => {
  const none = h({});
  assert.deepEqual(classifyResponse(400, none, OPENAI_UNKNOWN_FIELD, 0).kind, "client_error");
  assert.deepEqual(
    classifyResponse(
      400,
      none,
      '{"type":"error","error":{"type":"invalid_request_error","message":"billing: Extra inputs are not permitted"}}',
      0,
    ).kind,
    "client_error",
  );
  assert.deepEqual(classifyResponse(401, none, ANTHROPIC_CORS, 0).kind, "client_error");
  assert.deepEqual(classifyResponse(429, none, OPENAI_TOO_LARGE, 0).kind, "client_error");
  assert.deepEqual(classifyResponse(413, none, "", 0).kind, "client_error");
});

Deno.test("classifyResponse(): Gemini's per-minute 429 rests for its retryDelay, its PerDay 429 is a daily cap", () => {
  const none = h({});
  assert.deepEqual(
    classifyResponse(
      429,
      none,
      gemini429Body("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "22s"),
      0,
    ),
    { kind: "rate_limited", retryAfterMs: 22_000 },
  );
  assert.deepEqual(
    classifyResponse(
      429,
      none,
      gemini429Body("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "0s"),
      0,
    ),
    { kind: "rate_limited", retryAfterMs: 0, daily: true },
  );
  assert.deepEqual(classifyResponse(400, none, GEMINI_BAD_KEY, 0), {
    kind: "key_suspect",
    reason: "unauthorized",
  });
});

Deno.test("defaultCooldownMs() starts at 5 s, doubles, and stops at 60 s", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 9].map(defaultCooldownMs), [
    5000,
    10_000,
    20_000,
    40_000,
    60_000,
    60_000,
  ]);
});
