/**
 * What only a real HTTP server shows: raw request lines no client would
 * send, bytes on the wire (gzip), chunks as they arrive, a client that
 * hangs up, garbage on the socket. Everything else of the handler is
 * tested in process (handler_test.ts).
 */
import assert from "node:assert/strict";
import { auth, chatBody, PASSWORD, startMocked } from "../support/harness.ts";

/** openai, claude and `sub` (a target with a base path) over a mock provider; `relay` is openai's `streamRelay`. */
function setup(mockOptions = {}, relay: "observe" | "native" = "native") {
  const limits = { keys: ["sk-one"], rps: 100, burst: 100, maxConn: 50 };
  return startMocked(mockOptions, (url) => ({
    services: {
      openai: { target: url, ...limits, streamRelay: relay },
      claude: { target: url, ...limits },
      sub: { target: `${url}/base/path`, ...limits },
    },
  }));
}

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
    await using t = await setup({ chunkDelayMs: 100, chunks: 50 }, relay);
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
