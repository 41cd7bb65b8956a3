import { assertEquals } from "../support/assert.ts";
import { classifyResponse, defaultCooldownMs, parseRetryAfter } from "../../keys/mod.ts";

const h = (o: Record<string, string>) => new Headers(o);

Deno.test("parseRetryAfter() reads seconds, HTTP dates, retry-after-ms and x-ratelimit-reset-requests", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  assertEquals(parseRetryAfter(h({ "retry-after": "3" }), now), 3000);
  assertEquals(parseRetryAfter(h({ "retry-after": "Thu, 01 Jan 2026 00:00:10 GMT" }), now), 10_000);
  assertEquals(parseRetryAfter(h({ "retry-after-ms": "250" }), now), 250);
  assertEquals(parseRetryAfter(h({ "x-ratelimit-reset-requests": "6m0s" }), now), 360_000);
  assertEquals(parseRetryAfter(h({ "x-ratelimit-reset-requests": "1.5s" }), now), 1500);
  assertEquals(parseRetryAfter(h({ "x-ratelimit-reset-requests": "20ms" }), now), 20);
  assertEquals(parseRetryAfter(h({ "retry-after": "soon" }), now), undefined);
  assertEquals(parseRetryAfter(h({}), now), undefined);
});

Deno.test("classifyResponse() sorts answers into what they mean for the key", () => {
  const none = h({});
  assertEquals(classifyResponse(200, none, "", 0).kind, "success");
  assertEquals(classifyResponse(401, none, "", 0), {
    kind: "key_rejected",
    reason: "unauthorized",
  });
  assertEquals(classifyResponse(403, none, "", 0), { kind: "key_rejected", reason: "forbidden" });
  assertEquals(classifyResponse(402, none, "", 0), { kind: "key_rejected", reason: "quota" });
  assertEquals(
    classifyResponse(429, none, '{"error":{"code":"insufficient_quota"}}', 0).kind,
    "key_rejected",
  );
  assertEquals(
    classifyResponse(400, none, "Your credit balance is too low", 0).kind,
    "key_rejected",
  );
  assertEquals(classifyResponse(429, h({ "retry-after": "2" }), "", 0), {
    kind: "rate_limited",
    retryAfterMs: 2000,
  });
  assertEquals(classifyResponse(503, none, "", 0).kind, "upstream_error");
  assertEquals(classifyResponse(400, none, "bad model", 0).kind, "client_error");
  assertEquals(classifyResponse(404, none, "", 0).kind, "client_error");
});

Deno.test("defaultCooldownMs() starts at 5 s, doubles, and stops at 60 s", () => {
  assertEquals([1, 2, 3, 4, 5, 9].map(defaultCooldownMs), [
    5000,
    10_000,
    20_000,
    40_000,
    60_000,
    60_000,
  ]);
});
