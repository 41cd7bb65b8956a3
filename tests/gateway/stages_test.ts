/**
 * Each stage of the request path pinned in process: `handler(new Request(…))`
 * against an injected upstream `fetch` and the fake clock, no sockets.
 */
import assert from "node:assert/strict";
import { settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import {
  type Answer,
  chatRequest,
  gatewayOver,
  type InProcess,
  jsonAnswer,
} from "../support/in_process.ts";

const OK = { id: "c", choices: [{ message: { role: "assistant", content: "hi" } }] };

function setup(
  answer: Answer,
  settings: Record<string, unknown> = {},
  env: Record<string, string> = { OPENAI_API_KEYS: "sk-a,sk-b" },
): Promise<InProcess> {
  const services = (settings.services ?? {}) as Record<string, unknown>;
  const openai = { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 10 };
  return gatewayOver(answer, { ...settings, services: { openai, ...services } }, env);
}

const requestLines = (logs: Record<string, unknown>[]) => logs.filter((l) => "outcome" in l);

Deno.test("authenticate: a wrong password gets 401 in the provider's shape, none at all the disguise's 404, and nothing goes upstream", async () => {
  await using t = await setup(() => jsonAnswer(200, OK), {
    services: { claude: { target: "http://upstream.test", style: "anthropic" } },
  }, { OPENAI_API_KEYS: "sk-a", CLAUDE_API_KEYS: "ck-a" });
  const none = await t.gateway.handler(
    new Request("http://gw/openai/v1/chat/completions", { method: "POST", body: "{}" }),
  );
  assert.equal(none.status, 404);
  assert.equal(none.headers.get("server"), "nginx");
  await none.body?.cancel();
  const wrong = await t.gateway.handler(
    new Request("http://gw/claude/v1/messages", {
      method: "POST",
      headers: { "x-api-key": "not-the-password" },
      body: "{}",
    }),
  );
  assert.equal(wrong.status, 401);
  const body = await wrong.json();
  assert.equal(body.type, "error", "Anthropic's shape on claude");
  assert.equal(body.error.type, "authentication_error");
  assert.equal(t.calls.length, 0);
  assert.deepEqual(requestLines(t.logs).map((l) => l.status), [401]);
});

Deno.test("route: a path that tries to leave the target gets 400 invalid_path, and nothing goes upstream", async () => {
  await using t = await setup(() => jsonAnswer(200, OK));
  // (new Request() resolves `..` and `%2e%2e` itself; the socket tests send those raw.)
  for (const path of ["/openai//evil.test/x", "/openai/v1/%2F/x", "/openai/v1/%5C/x"]) {
    const r = await settle(
      t.clock,
      t.gateway.handler(
        new Request(`http://gw${path}`, { headers: { authorization: `Bearer ${PASSWORD}` } }),
      ),
    );
    assert.equal(r.status, 400, path);
    assert.equal((await r.json()).error.code, "invalid_path");
  }
  assert.equal(t.calls.length, 0);
});

Deno.test("admit: past maxConn a request waits in line; past queueLimit it gets 429 queue_full; past its deadline 429 queue_timeout", async () => {
  let finish: () => void = () => {};
  const held = new Promise<void>((r) => finish = r);
  await using t = await setup(async () => {
    await held;
    return jsonAnswer(200, OK);
  }, {
    queueLimit: 1,
    queueTimeoutMs: 5000,
    services: { openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 1 } },
  });
  const first = t.gateway.handler(chatRequest());
  await t.clock.advance(10);
  const second = t.gateway.handler(chatRequest());
  await t.clock.advance(10);
  const third = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.equal(third.status, 429);
  assert.equal((await third.json()).error.code, "gateway_queue_full");
  assert(Number(third.headers.get("retry-after")) >= 1);
  const timedOut = await settle(t.clock, second);
  assert.equal(timedOut.status, 429);
  assert.equal((await timedOut.json()).error.code, "gateway_queue_timeout");
  finish();
  assert.equal((await settle(t.clock, first)).status, 200);
  assert.equal(
    t.calls.length,
    1,
    "one request in flight at a time, and the waiters never went upstream",
  );
});

Deno.test("attempt: a 429 cools that key and the request retries on the other; the next request skips the cooling key", async () => {
  await using t = await setup((key) =>
    key === "sk-a" ? jsonAnswer(429, { error: { message: "slow down" } }) : jsonAnswer(200, OK)
  );
  const r = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.equal(r.status, 200);
  await r.text();
  const r2 = await settle(t.clock, t.gateway.handler(chatRequest()));
  await r2.text();
  assert.deepEqual(t.calls.map((c) => c.key), ["sk-a", "sk-b", "sk-b"]);
  const line = requestLines(t.logs)[0];
  assert.equal(line.attempts, 2);
  assert.equal(line.outcome, "complete");
});

Deno.test("attempt: when every key rests past the deadline (daily caps), 429 gateway_keys_resting with Retry-After until the day resets", async () => {
  await using t = await setup(
    () =>
      new Response(
        JSON.stringify({
          error: {
            code: 429,
            message: "Quota exceeded for metric: generate_content_free_tier_requests",
            details: [{
              violations: [{ quotaId: "GenerateRequestsPerDayPerProjectPerModel-FreeTier" }],
            }],
          },
        }),
        { status: 429, headers: { "retry-after": "20", "content-type": "application/json" } },
      ),
    { queueTimeoutMs: 10_000, maxRetries: 1 },
  );
  const first = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.equal(first.status, 429, "the upstream's own 429 after both keys tried");
  await first.body?.cancel();
  const rests = t.logs.filter((l) => l.event === "key_rest");
  assert.deepEqual(rests.map((l) => l.reason), ["daily_quota", "daily_quota"]);
  assert.equal(
    t.logs.filter((l) => l.event === "provider_backoff").length,
    0,
    "a daily cap is no pause",
  );
  const r = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.equal(r.status, 429);
  assert.equal((await r.json()).error.code, "gateway_keys_resting");
  const now = t.clock.now();
  const untilMidnight = Math.ceil((Math.floor(now / 86_400_000 + 1) * 86_400_000 - now) / 1000);
  const retryAfter = Number(r.headers.get("retry-after"));
  assert(
    Math.abs(retryAfter - untilMidnight) <= 2,
    `Retry-After ${retryAfter} vs ${untilMidnight}`,
  );
  assert.equal(t.calls.length, 2, "no key was tried while resting");
});

Deno.test("attempt: a 5xx retries after a back-off on the clock; no answer at all ends in 502", async () => {
  let calls = 0;
  await using t = await setup(() => {
    calls++;
    if (calls === 1) return jsonAnswer(503, { error: { message: "busy" } });
    throw new TypeError("connection refused");
  }, { maxRetries: 2 });
  const pending = t.gateway.handler(chatRequest());
  // The first back-off is 250 ms × (0.5 + random), random fixed at 0.5.
  await t.clock.advance(200);
  assert.equal(calls, 1, "the second attempt waits for its back-off");
  await t.clock.advance(100);
  assert.equal(calls, 2);
  const r = await settle(t.clock, pending);
  assert.equal(r.status, 502);
  assert.equal((await r.json()).error.code, "upstream_unreachable");
  assert.equal(calls, 3);
});

Deno.test("respond: JSON passes whole with x-request-id; an SSE stream is relayed chunk by chunk and accounted at its end", async () => {
  await using t = await setup((_, req) =>
    new URL(req.url).pathname.endsWith("/stream")
      ? new Response("data: 1\n\ndata: [DONE]\n\n", {
        headers: { "content-type": "text/event-stream" },
      })
      : jsonAnswer(200, OK)
  );
  const json = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.deepEqual(await json.json(), OK);
  assert.match(json.headers.get("x-request-id") ?? "", /^[0-9A-HJKMNP-TV-Z]{26}$/);
  const sse = await settle(
    t.clock,
    t.gateway.handler(
      new Request("http://gw/openai/v1/stream", {
        method: "POST",
        headers: { authorization: `Bearer ${PASSWORD}` },
        body: "{}",
      }),
    ),
  );
  assert.equal(sse.headers.get("x-accel-buffering"), "no");
  assert.equal(await sse.text(), "data: 1\n\ndata: [DONE]\n\n");
  const lines = requestLines(t.logs);
  assert.deepEqual(lines.map((l) => [l.outcome, l.bytes]), [
    ["complete", JSON.stringify(OK).length],
    ["complete", 23],
  ]);
});

Deno.test("account: one log line per request, naming the key by its id, never by the key", async () => {
  await using t = await setup(() => jsonAnswer(200, OK));
  const r = await settle(t.clock, t.gateway.handler(chatRequest()));
  await r.text();
  const [line] = requestLines(t.logs);
  assert.deepEqual(Object.keys(line).sort(), [
    "attempts",
    "bytes",
    "client",
    "id",
    "key",
    "method",
    "outcome",
    "queueMs",
    "relay",
    "service",
    "status",
    "t",
    "team",
    "totalMs",
    "upstreamMs",
  ]);
  assert.match(String(line.key), /^k_[0-9a-f]{12}$/);
  assert.equal(
    line.client,
    undefined,
    "the client's address is logged only for a refused credential",
  );
  assert(!JSON.stringify(t.logs).includes("sk-a") && !JSON.stringify(t.logs).includes("sk-b"));
  assert(!JSON.stringify(t.logs).includes(PASSWORD));
});
