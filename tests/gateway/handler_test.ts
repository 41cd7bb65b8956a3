/**
 * The handler in process — `handler(new Request(…))`, an injected upstream,
 * the fake clock: routing, auth and the nginx disguise, CORS, the headers
 * that go upstream, request ids and the log line, body limits, timeouts.
 * What needs a real server (raw paths, bytes on the wire, hang-ups,
 * garbage) is in http_server_test.ts.
 */
import assert from "node:assert/strict";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { auth, chatBody, PASSWORD } from "../support/harness.ts";
import { gatewayOver } from "../support/in_process.ts";
import { timedProvider, type Timing } from "../support/timed_provider.ts";

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

/** The services under test, in process; `relay` is openai's `streamRelay`. */
async function setup(
  o: Timing = {},
  settings: Record<string, unknown> = {},
  env: Record<string, string> = {},
  relay: "observe" | "native" = "native",
) {
  const clock = new FakeClock();
  const url = "http://upstream.test";
  const limits = { rps: 100, burst: 100, maxConn: 50 };
  const t = await gatewayOver(timedProvider(clock, o).answer, {
    ...settings,
    services: {
      openai: { target: url, ...limits, streamRelay: relay },
      claude: { target: url, ...limits },
      gemini: { target: url, ...limits },
      gemq: { target: url, style: "gemini", keyInQuery: true, ...limits },
      sub: { target: `${url}/base/path`, ...limits },
    },
  }, {
    OPENAI_API_KEYS: "sk-one",
    CLAUDE_API_KEYS: "sk-one",
    GEMINI_API_KEYS: "g-one",
    GEMQ_API_KEYS: "g-one",
    SUB_API_KEYS: "sk-one",
    ...env,
  }, { clock });
  /** The gateway's answer to `path` (on http://gw), the clock moved on while it waits. */
  const fetch = (path: string, init?: RequestInit) =>
    settle(clock, t.gateway.handler(new Request(`http://gw${path}`, init)), 100);
  return Object.assign(t, { fetch });
}

Deno.test("routing: the rest of the path and the query go to the target", async () => {
  await using t = await setup();
  const res = await t.fetch(`/openai/v1/chat/completions?x=1`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody(),
  });
  assert.deepEqual(res.status, 200);
  await res.body?.cancel();
  assert.deepEqual(t.calls[0].path, "/v1/chat/completions");
  assert.deepEqual(t.calls[0].search, "?x=1");
  const sub = await t.fetch(`/sub/v1/models`, { headers: auth() });
  await sub.body?.cancel();
  assert.deepEqual(t.calls[1].path, "/base/path/v1/models");
});

Deno.test("routing: the first segment must match exactly (/claudex is not claude)", async () => {
  await using t = await setup();
  const anon = await t.fetch(`/claudex/v1/messages`, { method: "POST", body: "{}" });
  assert.deepEqual(anon.status, 404);
  assert.deepEqual(anon.headers.get("server"), "nginx");
  assert((await anon.text()).includes("<center>nginx</center>"));
  const authed = await t.fetch(`/claudex/v1/messages`, {
    method: "POST",
    headers: auth(),
    body: "{}",
  });
  assert.deepEqual(authed.status, 404);
  const body = await authed.json();
  assert.deepEqual(body.error.code, "unknown_service");
  assert(body.error.message.includes("/claude"), "names the valid prefixes");
  assert.deepEqual(t.calls.length, 0);
});

Deno.test("gemini: /gemini/v1 maps to /v1beta/openai; native paths pass with x-goog-api-key; ?key= authenticates only where keyInQuery is on", async () => {
  await using t = await setup();
  const res = await t.fetch(`/gemini/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody(),
  });
  assert.deepEqual(res.status, 200);
  await res.body?.cancel();
  assert.deepEqual(t.calls[0].path, "/v1beta/openai/chat/completions");
  assert.deepEqual(t.calls[0].headers.get("authorization"), "Bearer g-one");

  const path = `/v1beta/models/gemini-pro:generateContent?key=${PASSWORD}&alt=json`;
  const post = { method: "POST", headers: { "content-type": "application/json" }, body: "{}" };
  const refused = await t.fetch(`/gemini${path}`, post);
  assert.deepEqual(refused.status, 401, "?key= is off by default");
  assert((await refused.text()).includes("x-goog-api-key"), "the answer says what to send instead");
  const native = await t.fetch(`/gemq${path}`, post);
  assert.deepEqual(native.status, 200);
  await native.body?.cancel();
  const seen = t.calls[1];
  assert.deepEqual(seen.path, "/v1beta/models/gemini-pro:generateContent");
  assert.deepEqual(seen.search, "?alt=json");
  assert.deepEqual(seen.headers.get("x-goog-api-key"), "g-one");
  assert.deepEqual(seen.headers.get("authorization"), null);
});

Deno.test("auth: a wrong password gets 401 in the provider's error shape; no credential at all gets the disguise's 404 (L1)", async () => {
  await using t = await setup();
  const missing = await t.fetch(`/openai/v1/models`);
  assert.deepEqual(missing.status, 404);
  assert.deepEqual(missing.headers.get("server"), "nginx");
  const other = await t.fetch(`/notaservice/v1/models`);
  assert.deepEqual(await missing.text(), await other.text(), "a service path looks like any other");
  const wrong = await t.fetch(`/openai/v1/models`, {
    headers: { authorization: "Bearer nope" },
  });
  assert.deepEqual(wrong.status, 401);
  assert.deepEqual(wrong.headers.get("content-type"), "application/json");
  const m = await wrong.json();
  assert.deepEqual(m.error.type, "authentication_error");
  assert.deepEqual(m.error.code, "invalid_api_key");
  assert.deepEqual(typeof m.error.message, "string");
  const claude = await t.fetch(`/claude/v1/messages`, {
    method: "POST",
    headers: { "x-api-key": "wrong" },
    body: "{}",
  });
  assert.deepEqual(claude.status, 401);
  const c = await claude.json();
  assert.deepEqual(c.type, "error");
  assert.deepEqual(c.error.type, "authentication_error");
  const xApiKey = await t.fetch(`/openai/v1/models`, {
    headers: { "x-api-key": PASSWORD },
  });
  assert.deepEqual(xApiKey.status, 200);
  await xApiKey.body?.cancel();
  assert.deepEqual(
    t.calls.length,
    1,
    "only the authenticated request reached the upstream",
  );
});

Deno.test("disguise: / and unknown paths look like a default nginx, without CORS or request ids", async () => {
  await using t = await setup();
  const root = await t.fetch(`/`);
  assert.deepEqual(root.status, 200);
  assert.deepEqual(root.headers.get("server"), "nginx");
  assert((await root.text()).includes("Welcome to nginx!"));
  assert.deepEqual(root.headers.get("access-control-allow-origin"), null);
  assert.deepEqual(root.headers.get("x-request-id"), null);
  const other = await t.fetch(`/wp-admin/login.php`);
  assert.deepEqual(other.status, 404);
  assert.deepEqual(other.headers.get("content-type"), "text/html");
  assert((await other.text()).includes("404 Not Found"));
  assert.deepEqual(other.headers.get("x-request-id"), null);
  const err = await t.fetch(`/50x.html`);
  assert.deepEqual(err.status, 200, "the stock error page, as a default nginx serves it");
  assert((await err.text()).includes("Faithfully yours, nginx."));
});

Deno.test("CORS: preflight answers 204 with allow headers; answers to a browser (Origin) carry CORS headers", async () => {
  await using t = await setup();
  const pre = await t.fetch(`/openai/v1/chat/completions`, {
    method: "OPTIONS",
    headers: {
      origin: "https://example.com",
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization, content-type",
    },
  });
  assert.deepEqual(pre.status, 204);
  assert.deepEqual(pre.headers.get("access-control-allow-origin"), "*");
  assert(pre.headers.get("access-control-allow-methods")?.includes("POST"));
  assert.deepEqual(
    pre.headers.get("access-control-allow-headers"),
    "authorization, *",
    "fixed, nothing reflected",
  );
  assert.deepEqual(pre.headers.get("x-request-id"), null);
  const origin = { origin: "https://example.com" };
  const res = await t.fetch(`/openai/v1/models`, { headers: auth(origin) });
  assert.deepEqual(res.headers.get("access-control-allow-origin"), "*");
  assert(res.headers.get("access-control-expose-headers")?.includes("x-request-id"));
  await res.body?.cancel();
  assert.deepEqual(t.calls.length, 1);
  // Errors the gateway answers itself too: a browser must be able to read them.
  const denied = await t.fetch(`/openai/v1/models`, {
    headers: { ...origin, authorization: "Bearer wrong-one" },
  });
  assert.deepEqual(denied.status, 401);
  assert.deepEqual(denied.headers.get("access-control-allow-origin"), "*");
  await denied.body?.cancel();
});

Deno.test("CORS: answers to a client without Origin carry no CORS headers; cacheable ones say Vary: Origin", async () => {
  await using t = await setup();
  const get = await t.fetch(`/openai/v1/models`, { headers: auth() });
  assert.deepEqual(get.status, 200);
  assert.deepEqual(get.headers.get("access-control-allow-origin"), null);
  assert.deepEqual(get.headers.get("vary"), "origin");
  await get.body?.cancel();
  const post = await t.fetch(`/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: JSON.stringify({ model: "m", messages: [] }),
  });
  assert.deepEqual(post.status, 200);
  assert.deepEqual(post.headers.get("access-control-allow-origin"), null);
  assert.deepEqual(post.headers.get("vary"), null, "a POST answer is not cached");
  await post.body?.cancel();
  const denied = await t.fetch(`/openai/v1/models`, {
    headers: { authorization: "Bearer wrong-one" },
  });
  assert.deepEqual(denied.status, 401);
  assert.deepEqual(denied.headers.get("access-control-allow-origin"), null);
  assert.deepEqual(denied.headers.get("vary"), "origin");
  await denied.body?.cancel();
});

Deno.test("headers: only the SDKs' headers go upstream (an allowlist); credentials, hop-by-hop and client context stay; identity encoding is asked for", async () => {
  await using t = await setup();
  const res = await t.fetch(`/openai/v1/models`, {
    headers: auth({
      "x-api-key": "client-extra",
      "connection": "keep-alive, x-stainless-private",
      "x-stainless-private": "hop",
      "keep-alive": "timeout=5",
      "accept-encoding": "gzip, br",
      "x-custom": "not kept",
      "origin": "chrome-extension://abc",
      "referer": "https://example.com/page?secret=1",
      "cookie": "session=1",
      "x-forwarded-for": "10.0.0.1",
      "forwarded": "for=10.0.0.1",
      "openai-organization": "org-anything",
      "openai-project": "proj-anything",
      "user-agent": "OpenAI/JS 7.57.0",
      "x-stainless-retry-count": "0",
      "openai-beta": "assistants=v2",
    }),
  });
  await res.body?.cancel();
  const h = t.calls[0].headers;
  assert.deepEqual(h.get("authorization"), "Bearer sk-one");
  assert.deepEqual(h.get("x-api-key"), null);
  assert.deepEqual(h.get("x-private"), null);
  assert.deepEqual(h.get("keep-alive"), null);
  assert.deepEqual(h.get("accept-encoding"), "identity");
  for (
    const name of [
      "x-custom",
      "x-stainless-private",
      "origin",
      "referer",
      "cookie",
      "x-forwarded-for",
      "forwarded",
      "openai-organization",
      "openai-project",
    ]
  ) assert.deepEqual(h.get(name), null, `${name} is not forwarded`);
  assert.deepEqual(h.get("user-agent"), "OpenAI/JS 7.57.0");
  assert.deepEqual(h.get("x-stainless-retry-count"), "0");
  assert.deepEqual(h.get("openai-beta"), "assistants=v2");
});

Deno.test("request ids and logs: a ULID on every service response, one log line without secrets", async () => {
  await using t = await setup();
  const res = await t.fetch(`/openai/v1/models`, { headers: auth() });
  await res.body?.cancel();
  const denied = await t.fetch(`/openai/v1/models`, {
    headers: { authorization: "Bearer wrong-secret" },
  });
  await denied.body?.cancel();
  assert(ULID.test(res.headers.get("x-request-id") ?? ""), "x-request-id is a ULID");
  assert(ULID.test(denied.headers.get("x-request-id") ?? ""));
  const lines = t.logs.filter((l) => l.id !== undefined);
  assert.deepEqual(lines.length, 2);
  const ok = lines.find((l) => l.id === res.headers.get("x-request-id"))!;
  assert.deepEqual(ok.service, "openai");
  assert.deepEqual(ok.status, 200);
  assert.deepEqual(ok.attempts, 1);
  assert(/^k_[0-9a-f]{12}$/.test(String(ok.key)), "the key appears as a short hash");
  assert.deepEqual(typeof ok.queueMs, "number");
  assert.deepEqual(typeof ok.upstreamMs, "number");
  const all = JSON.stringify(t.logs);
  for (const secret of ["sk-one", PASSWORD, "wrong-secret"]) {
    assert(!all.includes(secret), `log holds ${secret}`);
  }
});

Deno.test("limits: a body over maxBodyBytes gets 413 and never reaches the upstream", async () => {
  await using t = await setup({}, { maxBodyBytes: 1024 });
  const big = "x".repeat(2048);
  const res = await t.fetch(`/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth(),
    body: big,
  });
  assert.deepEqual(res.status, 413);
  assert.deepEqual((await res.json()).error.code, "request_too_large");
  // Chunked, with no content-length.
  const chunked = await t.fetch(`/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth(),
    body: new Blob([big]).stream(),
  });
  assert.deepEqual(chunked.status, 413);
  await chunked.body?.cancel();
  assert.deepEqual(t.calls.length, 0);
});

Deno.test("Deno Deploy without ACCESS_PASSWORD: every API request answers 503 telling the operator", async () => {
  await using t = await setup({}, {}, { ACCESS_PASSWORD: "", DENO_DEPLOYMENT_ID: "test" });
  const res = await t.fetch(`/openai/v1/models`, { headers: auth() });
  assert.deepEqual(res.status, 503);
  const body = await res.json();
  assert(body.error.message.includes("ACCESS_PASSWORD"));
  assert.deepEqual(t.calls.length, 0);
});

Deno.test("timeouts: no response headers within firstByteTimeoutMs answers 504", async () => {
  await using t = await setup({ latencyMs: 1500 }, { firstByteTimeoutMs: 200, maxRetries: 0 });
  const started = t.clock.now();
  const res = await t.fetch(`/openai/v1/models`, { headers: auth() });
  assert.deepEqual(res.status, 504);
  assert.deepEqual((await res.json()).error.code, "upstream_timeout");
  assert(t.clock.now() - started < 1500, "answered before the upstream did");
});

Deno.test("timeouts: a stream silent for idleTimeoutMs ends at an event boundary with an error event, not a clean end", async () => {
  await using t = await setup(
    { chunkMs: 1000, chunks: 5 },
    { idleTimeoutMs: 300 },
    {},
    "observe",
  );
  const started = t.clock.now();
  const res = await t.fetch(`/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody({ stream: true }),
  });
  const text = await settle(t.clock, res.text(), 100); // the stream ends (with its error event), not cut
  assert(text.includes("part0"));
  assert(!text.includes("part1"));
  const last = JSON.parse(text.trimEnd().split("\n\n").at(-1)!.slice("data: ".length));
  assert.deepEqual(last.error.code, "upstream_timeout");
  assert(t.clock.now() - started < 1000, "ended at the idle timeout, not the stream's end");
  assert(t.logs.some((l) => l.outcome === "idle_timeout"));
});
