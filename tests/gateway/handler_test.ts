import assert from "node:assert/strict";
import { auth, chatBody, PASSWORD, startMocked } from "../support/harness.ts";

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

/** The services under test; `relay` is openai's `streamRelay` (default the config's, native). */
function setup(
  mockOptions = {},
  settings: Record<string, unknown> = {},
  extra = {},
  relay: "observe" | "native" = "native",
) {
  return startMocked(mockOptions, (url) => ({
    services: {
      openai: {
        target: url,
        keys: ["sk-one"],
        rps: 100,
        burst: 100,
        maxConn: 50,
        streamRelay: relay,
      },
      claude: { target: url, keys: ["sk-one"], rps: 100, burst: 100, maxConn: 50 },
      gemini: { target: url, keys: ["g-one"], rps: 100, burst: 100, maxConn: 50 },
      gemq: {
        target: url,
        style: "gemini",
        keyInQuery: true,
        keys: ["g-one"],
        rps: 100,
        burst: 100,
        maxConn: 50,
      },
      sub: { target: `${url}/base/path`, keys: ["sk-one"], rps: 100, burst: 100, maxConn: 50 },
    },
    settings,
    ...extra,
  }));
}

Deno.test("routing: the rest of the path and the query go to the target", async () => {
  await using t = await setup();
  const res = await fetch(`${t.gw.url}/openai/v1/chat/completions?x=1`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody(),
  });
  assert.deepEqual(res.status, 200);
  await res.body?.cancel();
  assert.deepEqual(t.mock.received[0].path, "/v1/chat/completions");
  assert.deepEqual(t.mock.received[0].search, "?x=1");
  const sub = await fetch(`${t.gw.url}/sub/v1/models`, { headers: auth() });
  await sub.body?.cancel();
  assert.deepEqual(t.mock.received[1].path, "/base/path/v1/models");
});

Deno.test("routing: the first segment must match exactly (/claudex is not claude)", async () => {
  await using t = await setup();
  const anon = await fetch(`${t.gw.url}/claudex/v1/messages`, { method: "POST", body: "{}" });
  assert.deepEqual(anon.status, 404);
  assert.deepEqual(anon.headers.get("server"), "nginx");
  assert((await anon.text()).includes("<center>nginx</center>"));
  const authed = await fetch(`${t.gw.url}/claudex/v1/messages`, {
    method: "POST",
    headers: auth(),
    body: "{}",
  });
  assert.deepEqual(authed.status, 404);
  const body = await authed.json();
  assert.deepEqual(body.error.code, "unknown_service");
  assert(body.error.message.includes("/claude"), "names the valid prefixes");
  assert.deepEqual(t.mock.received.length, 0);
});

Deno.test("routing: no path leaves the target's origin or climbs above its path", async () => {
  await using t = await setup();
  const attempts = [
    "/sub/../../etc/passwd",
    "/sub/%2e%2e/%2e%2e/secret",
    "/sub/%2E%2E/x",
    "/sub/v1/..%2f..%2fx",
    "/sub//evil.example/x",
    "/sub/v1/%5c%5cevil.example/x",
    "/sub/v1/\\evil.example",
    "/sub/v1/%2fevil",
    "/sub/%zz",
  ];
  for (const path of attempts) {
    // A raw request line, so no client normalizes the path first.
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: Number(new URL(t.gw.url).port),
    });
    await conn.write(
      new TextEncoder().encode(
        `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PASSWORD}\r\nConnection: close\r\n\r\n`,
      ),
    );
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    conn.close();
    const head = new TextDecoder().decode(buf.subarray(0, n ?? 0));
    assert(/^HTTP\/1\.1 (400|404)/.test(head), `${path} answered ${head.split("\r\n")[0]}`);
  }
  for (const r of t.mock.received) {
    assert(r.path.startsWith("/base/path/"), `upstream saw ${r.path}`);
  }
});

Deno.test("gemini: /gemini/v1 maps to /v1beta/openai; native paths pass with x-goog-api-key; ?key= authenticates only where keyInQuery is on", async () => {
  await using t = await setup();
  const res = await fetch(`${t.gw.url}/gemini/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody(),
  });
  assert.deepEqual(res.status, 200);
  await res.body?.cancel();
  assert.deepEqual(t.mock.received[0].path, "/v1beta/openai/chat/completions");
  assert.deepEqual(t.mock.received[0].headers.get("authorization"), "Bearer g-one");

  const path = `/v1beta/models/gemini-pro:generateContent?key=${PASSWORD}&alt=json`;
  const post = { method: "POST", headers: { "content-type": "application/json" }, body: "{}" };
  const refused = await fetch(`${t.gw.url}/gemini${path}`, post);
  assert.deepEqual(refused.status, 401, "?key= is off by default");
  assert((await refused.text()).includes("x-goog-api-key"), "the answer says what to send instead");
  const native = await fetch(`${t.gw.url}/gemq${path}`, post);
  assert.deepEqual(native.status, 200);
  await native.body?.cancel();
  const seen = t.mock.received[1];
  assert.deepEqual(seen.path, "/v1beta/models/gemini-pro:generateContent");
  assert.deepEqual(seen.search, "?alt=json");
  assert.deepEqual(seen.headers.get("x-goog-api-key"), "g-one");
  assert.deepEqual(seen.headers.get("authorization"), null);
});

Deno.test("auth: a wrong password gets 401 in the provider's error shape; no credential at all gets the disguise's 404 (L1)", async () => {
  await using t = await setup();
  const missing = await fetch(`${t.gw.url}/openai/v1/models`);
  assert.deepEqual(missing.status, 404);
  assert.deepEqual(missing.headers.get("server"), "nginx");
  const other = await fetch(`${t.gw.url}/notaservice/v1/models`);
  assert.deepEqual(await missing.text(), await other.text(), "a service path looks like any other");
  const wrong = await fetch(`${t.gw.url}/openai/v1/models`, {
    headers: { authorization: "Bearer nope" },
  });
  assert.deepEqual(wrong.status, 401);
  assert.deepEqual(wrong.headers.get("content-type"), "application/json");
  const m = await wrong.json();
  assert.deepEqual(m.error.type, "authentication_error");
  assert.deepEqual(m.error.code, "invalid_api_key");
  assert.deepEqual(typeof m.error.message, "string");
  const claude = await fetch(`${t.gw.url}/claude/v1/messages`, {
    method: "POST",
    headers: { "x-api-key": "wrong" },
    body: "{}",
  });
  assert.deepEqual(claude.status, 401);
  const c = await claude.json();
  assert.deepEqual(c.type, "error");
  assert.deepEqual(c.error.type, "authentication_error");
  const xApiKey = await fetch(`${t.gw.url}/openai/v1/models`, {
    headers: { "x-api-key": PASSWORD },
  });
  assert.deepEqual(xApiKey.status, 200);
  await xApiKey.body?.cancel();
  assert.deepEqual(
    t.mock.received.length,
    1,
    "only the authenticated request reached the upstream",
  );
});

Deno.test("disguise: / and unknown paths look like a default nginx, without CORS or request ids", async () => {
  await using t = await setup();
  const root = await fetch(`${t.gw.url}/`);
  assert.deepEqual(root.status, 200);
  assert.deepEqual(root.headers.get("server"), "nginx");
  assert((await root.text()).includes("Welcome to nginx!"));
  assert.deepEqual(root.headers.get("access-control-allow-origin"), null);
  assert.deepEqual(root.headers.get("x-request-id"), null);
  const other = await fetch(`${t.gw.url}/wp-admin/login.php`);
  assert.deepEqual(other.status, 404);
  assert.deepEqual(other.headers.get("content-type"), "text/html");
  assert((await other.text()).includes("404 Not Found"));
  assert.deepEqual(other.headers.get("x-request-id"), null);
  const err = await fetch(`${t.gw.url}/50x.html`);
  assert.deepEqual(err.status, 200, "the stock error page, as a default nginx serves it");
  assert((await err.text()).includes("Faithfully yours, nginx."));
});

Deno.test("CORS: preflight answers 204 with allow headers; answers to a browser (Origin) carry CORS headers", async () => {
  await using t = await setup();
  const pre = await fetch(`${t.gw.url}/openai/v1/chat/completions`, {
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
  const res = await fetch(`${t.gw.url}/openai/v1/models`, { headers: auth(origin) });
  assert.deepEqual(res.headers.get("access-control-allow-origin"), "*");
  assert(res.headers.get("access-control-expose-headers")?.includes("x-request-id"));
  await res.body?.cancel();
  assert.deepEqual(t.mock.received.length, 1);
  // Errors the gateway answers itself too: a browser must be able to read them.
  const denied = await fetch(`${t.gw.url}/openai/v1/models`, {
    headers: { ...origin, authorization: "Bearer wrong-one" },
  });
  assert.deepEqual(denied.status, 401);
  assert.deepEqual(denied.headers.get("access-control-allow-origin"), "*");
  await denied.body?.cancel();
});

Deno.test("CORS: answers to a client without Origin carry no CORS headers; cacheable ones say Vary: Origin", async () => {
  await using t = await setup();
  const get = await fetch(`${t.gw.url}/openai/v1/models`, { headers: auth() });
  assert.deepEqual(get.status, 200);
  assert.deepEqual(get.headers.get("access-control-allow-origin"), null);
  assert.deepEqual(get.headers.get("vary"), "origin");
  await get.body?.cancel();
  const post = await fetch(`${t.gw.url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: JSON.stringify({ model: "m", messages: [] }),
  });
  assert.deepEqual(post.status, 200);
  assert.deepEqual(post.headers.get("access-control-allow-origin"), null);
  assert.deepEqual(post.headers.get("vary"), null, "a POST answer is not cached");
  await post.body?.cancel();
  const denied = await fetch(`${t.gw.url}/openai/v1/models`, {
    headers: { authorization: "Bearer wrong-one" },
  });
  assert.deepEqual(denied.status, 401);
  assert.deepEqual(denied.headers.get("access-control-allow-origin"), null);
  assert.deepEqual(denied.headers.get("vary"), "origin");
  await denied.body?.cancel();
});

Deno.test("headers: only the SDKs' headers go upstream (an allowlist); credentials, hop-by-hop and client context stay; identity encoding is asked for", async () => {
  await using t = await setup();
  const res = await fetch(`${t.gw.url}/openai/v1/models`, {
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
  const h = t.mock.received[0].headers;
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

Deno.test("gzip: an upstream that gzips anyway reaches the client as gzip bytes labelled gzip", async () => {
  await using t = await setup({ forceGzip: true });
  // Deno's fetch hands over raw bytes only when the caller itself asks for identity
  // (with "gzip" it decodes and keeps the label — the very bug the gateway avoids).
  const res = await fetch(`${t.gw.url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json", "accept-encoding": "identity" }),
    body: chatBody(),
  });
  assert.deepEqual(res.headers.get("content-encoding"), "gzip");
  const raw = new Uint8Array(await res.arrayBuffer());
  assert.deepEqual([raw[0], raw[1]], [0x1f, 0x8b], "the bytes are gzip");
  const text = await new Response(
    new Blob([raw]).stream().pipeThrough(new DecompressionStream("gzip")),
  ).text();
  assert.deepEqual(JSON.parse(text).choices[0].message.content, "Hello from mock");
  // And a client that lets fetch decode gets the JSON as usual.
  const plain = await fetch(`${t.gw.url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody(),
  });
  assert.deepEqual((await plain.json()).choices[0].message.content, "Hello from mock");
});

Deno.test("gzip: an upstream that honours identity sends plain bytes with no encoding label", async () => {
  await using t = await setup();
  const res = await fetch(`${t.gw.url}/openai/v1/models`, {
    headers: auth({ "accept-encoding": "identity" }),
  });
  assert.deepEqual(res.headers.get("content-encoding"), null);
  assert.deepEqual((await res.json()).object, "list");
});

Deno.test("streaming: each SSE chunk reaches the client as it arrives", async () => {
  await using t = await setup({ chunkDelayMs: 200, chunks: 4 });
  const started = Date.now();
  const res = await fetch(`${t.gw.url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody({ stream: true }),
  });
  assert.deepEqual(res.headers.get("content-type"), "text/event-stream");
  assert.deepEqual(res.headers.get("x-accel-buffering"), "no");
  const reader = res.body!.getReader();
  const first = await reader.read();
  const firstAt = Date.now() - started;
  assert(new TextDecoder().decode(first.value).includes("part0"));
  while (!(await reader.read()).done) { /* drain */ }
  const lastAt = Date.now() - started;
  // 6 events 200 ms apart: the last leaves the mock about 1 s after the first.
  assert(firstAt < 400, `first chunk after ${firstAt} ms`);
  assert(lastAt - firstAt >= 800, `first at ${firstAt} ms, last at ${lastAt} ms`);
});

for (const relay of ["observe", "native"] as const) {
  Deno.test(`streaming (${relay}): a client that disconnects aborts the upstream request and frees its slot`, async () => {
    await using t = await setup({ chunkDelayMs: 100, chunks: 50 }, {}, {}, relay);
    const ac = new AbortController();
    const res = await fetch(`${t.gw.url}/openai/v1/chat/completions`, {
      method: "POST",
      headers: auth({ "content-type": "application/json" }),
      body: chatBody({ stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    const limiter = t.gw.gateway.runtimes.get("openai")!.limiter;
    assert.deepEqual(limiter.inFlight, 1, "a stream holds its slot");
    assert.deepEqual(t.mock.inFlight, 1);
    ac.abort();
    await reader.cancel().catch(() => {});
    for (let i = 0; i < 50 && (t.mock.inFlight > 0 || limiter.inFlight > 0); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(t.mock.inFlight, 0, "the upstream stream was aborted");
    assert.deepEqual(limiter.inFlight, 0, "the slot was freed");
    const line = t.gw.logs.find((l) => l.status === 200);
    assert.deepEqual(line?.relay, relay, "the log says how the stream was relayed");
    // A native stream's end is the server's word, which does not say who ended it.
    assert.deepEqual(line?.outcome, relay === "native" ? "native" : "client_abort");
  });
}

Deno.test("request ids and logs: a ULID on every service response, one log line without secrets", async () => {
  await using t = await setup();
  const res = await fetch(`${t.gw.url}/openai/v1/models`, { headers: auth() });
  await res.body?.cancel();
  const denied = await fetch(`${t.gw.url}/openai/v1/models`, {
    headers: { authorization: "Bearer wrong-secret" },
  });
  await denied.body?.cancel();
  assert(ULID.test(res.headers.get("x-request-id") ?? ""), "x-request-id is a ULID");
  assert(ULID.test(denied.headers.get("x-request-id") ?? ""));
  const lines = t.gw.logs.filter((l) => l.id !== undefined);
  assert.deepEqual(lines.length, 2);
  const ok = lines.find((l) => l.id === res.headers.get("x-request-id"))!;
  assert.deepEqual(ok.service, "openai");
  assert.deepEqual(ok.status, 200);
  assert.deepEqual(ok.attempts, 1);
  assert(/^k_[0-9a-f]{12}$/.test(String(ok.key)), "the key appears as a short hash");
  assert.deepEqual(typeof ok.queueMs, "number");
  assert.deepEqual(typeof ok.upstreamMs, "number");
  const all = JSON.stringify(t.gw.logs);
  for (const secret of ["sk-one", PASSWORD, "wrong-secret"]) {
    assert(!all.includes(secret), `log holds ${secret}`);
  }
});

Deno.test("limits: a body over maxBodyBytes gets 413 and never reaches the upstream", async () => {
  await using t = await setup({}, { maxBodyBytes: 1024 });
  const big = "x".repeat(2048);
  const res = await fetch(`${t.gw.url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth(),
    body: big,
  });
  assert.deepEqual(res.status, 413);
  assert.deepEqual((await res.json()).error.code, "request_too_large");
  // Chunked, with no content-length.
  const chunked = await fetch(`${t.gw.url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth(),
    body: new Blob([big]).stream(),
  });
  assert.deepEqual(chunked.status, 413);
  await chunked.body?.cancel();
  assert.deepEqual(t.mock.received.length, 0);
});

Deno.test("garbage in headers, paths and bodies never crashes or hangs the gateway", async () => {
  await using t = await setup();
  const port = Number(new URL(t.gw.url).port);
  const junk = [
    "GET /openai/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: \x01\x02\r\n\r\n",
    "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nAuthorization: Bearer " +
    PASSWORD +
    "\r\n\r\n\xff\xfe\x00{[",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n",
    "GET /%%%%/../\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /claude/v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nx-api-key: " +
    PASSWORD +
    "\r\n\r\nzz\r\nnot hex\r\n",
    "GET /openai/v1/models?" + "a=%".repeat(2000) +
    " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + PASSWORD +
    "\r\n\r\n",
  ];
  for (const raw of junk) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(Uint8Array.from(raw, (c) => c.charCodeAt(0)));
    const buf = new Uint8Array(8192);
    const read = conn.read(buf).catch(() => null);
    const timeout = new Promise((r) => setTimeout(() => r("timeout"), 3000));
    const n = await Promise.race([read, timeout]);
    conn.close();
    assert(
      n !== "timeout" || raw.includes("chunked") || raw.includes("Content-Length"),
      "answered in time",
    );
  }
  const after = await fetch(`${t.gw.url}/openai/v1/models`, { headers: auth() });
  assert.deepEqual(after.status, 200, "still serving after garbage");
  await after.body?.cancel();
});

Deno.test("Deno Deploy without ACCESS_PASSWORD: every API request answers 503 telling the operator", async () => {
  await using t = await setup({}, {}, { password: null, env: { DENO_DEPLOYMENT_ID: "test" } });
  const res = await fetch(`${t.gw.url}/openai/v1/models`, { headers: auth() });
  assert.deepEqual(res.status, 503);
  const body = await res.json();
  assert(body.error.message.includes("ACCESS_PASSWORD"));
  assert.deepEqual(t.mock.received.length, 0);
});

Deno.test("timeouts: no response headers within firstByteTimeoutMs answers 504", async () => {
  await using t = await setup({ latencyMs: 1500 }, { firstByteTimeoutMs: 200, maxRetries: 0 });
  const started = Date.now();
  const res = await fetch(`${t.gw.url}/openai/v1/models`, { headers: auth() });
  assert.deepEqual(res.status, 504);
  assert.deepEqual((await res.json()).error.code, "upstream_timeout");
  assert(Date.now() - started < 1200, "answered before the upstream did");
});

Deno.test("timeouts: a stream silent for idleTimeoutMs ends at an event boundary with an error event, not a clean end", async () => {
  await using t = await setup(
    { chunkDelayMs: 1000, chunks: 5 },
    { idleTimeoutMs: 300 },
    {},
    "observe",
  );
  const started = Date.now();
  const res = await fetch(`${t.gw.url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody({ stream: true }),
  });
  const text = await res.text(); // the stream ends (with its error event), not cut
  assert(text.includes("part0"));
  assert(!text.includes("part1"));
  const last = JSON.parse(text.trimEnd().split("\n\n").at(-1)!.slice("data: ".length));
  assert.deepEqual(last.error.code, "upstream_timeout");
  assert(Date.now() - started < 1000, "ended at the idle timeout, not the stream's end");
  assert(t.gw.logs.some((l) => l.outcome === "idle_timeout"));
});
