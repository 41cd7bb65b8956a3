import { assert, assertBetween, assertEquals } from "../support/assert.ts";
import { startMockUpstream } from "../support/mock_upstream.ts";
import { auth, chatBody, startGateway } from "../support/harness.ts";

function post(url: string, signal?: AbortSignal) {
  return fetch(`${url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody(),
    signal,
  });
}

for (const limitMode of ["local", "shared"] as const) {
  Deno.test(`pacing (${limitMode}): burst 8, rps 4, 20 concurrent → 8 at once, the rest at about 4 per second`, async () => {
    const mock = await startMockUpstream();
    const gw = await startGateway({
      services: { openai: { target: mock.url, keys: ["sk-one"], rps: 4, burst: 8, maxConn: 20 } },
      settings: { limitMode },
    });
    try {
      const started = Date.now();
      const all = await Promise.all(Array.from({ length: 20 }, () => post(gw.url)));
      for (const r of all) {
        assertEquals(r.status, 200);
        await r.body?.cancel();
      }
      const at = mock.received.map((r) => r.at - started).sort((a, b) => a - b);
      assert(at[7] < 150, `the first 8 left at once (8th at ${at[7]} ms)`);
      assert(at[8] >= 150, `the 9th waited for a token (at ${at[8]} ms)`);
      // 12 more at 4/s: the last about 3 s after the start.
      assertBetween(at[19], 2600, 3600, "the 20th request's arrival (ms)");
      const spacing = (at[19] - at[8]) / 11;
      assertBetween(spacing, 200, 300, "spacing after the burst (ms)");
    } finally {
      await gw.close();
      await mock.close();
    }
  });
}

Deno.test("pacing: requests in flight never exceed maxConn; a stream holds its slot to the end", async () => {
  const mock = await startMockUpstream({ chunkDelayMs: 50, chunks: 3 });
  const gw = await startGateway({
    services: {
      openai: { target: mock.url, keys: ["sk-one"], rps: 1000, burst: 1000, maxConn: 2 },
    },
  });
  try {
    const streams = Array.from({ length: 8 }, async () => {
      const r = await fetch(`${gw.url}/openai/v1/chat/completions`, {
        method: "POST",
        headers: auth({ "content-type": "application/json" }),
        body: chatBody({ stream: true }),
      });
      return await r.text();
    });
    const texts = await Promise.all(streams);
    for (const t of texts) assert(t.includes("[DONE]"));
    assertEquals(mock.received.length, 8);
    assertEquals(mock.maxInFlight, 2, "upstream high-water mark");
  } finally {
    await gw.close();
    await mock.close();
  }
});

Deno.test("queue: past queueLimit a request gets 429 with Retry-After in the provider's shape", async () => {
  const mock = await startMockUpstream({ latencyMs: 300 });
  const gw = await startGateway({
    services: {
      openai: { target: mock.url, keys: ["sk-one"], rps: 1000, burst: 1000, maxConn: 1 },
      claude: {
        target: mock.url,
        keys: ["sk-one"],
        rps: 1000,
        burst: 1000,
        maxConn: 1,
        style: "anthropic",
      },
    },
    settings: { queueLimit: 2 },
  });
  try {
    const pause = () => new Promise((r) => setTimeout(r, 50));
    const held = [post(gw.url)]; // in flight
    await pause();
    held.push(post(gw.url), post(gw.url)); // queued: the queue is full
    await pause();
    const refused = await post(gw.url);
    assertEquals(refused.status, 429);
    assert(Number(refused.headers.get("retry-after")) >= 1, "Retry-After in seconds");
    const body = await refused.json();
    assertEquals(body.error.type, "rate_limit_error");
    assertEquals(body.error.code, "gateway_queue_full");
    for (const r of await Promise.all(held)) {
      assertEquals(r.status, 200);
      await r.body?.cancel();
    }
    // Anthropic shape on the claude route.
    const claude = () =>
      fetch(`${gw.url}/claude/v1/messages`, { method: "POST", headers: auth(), body: "{}" });
    const c = [claude()];
    await pause();
    c.push(claude(), claude());
    await pause();
    const cr = await fetch(`${gw.url}/claude/v1/messages`, {
      method: "POST",
      headers: auth(),
      body: "{}",
    });
    assertEquals(cr.status, 429);
    const cb = await cr.json();
    assertEquals(cb.type, "error");
    assertEquals(cb.error.type, "rate_limit_error");
    for (const r of await Promise.all(c)) await r.body?.cancel();
  } finally {
    await gw.close();
    await mock.close();
  }
});

Deno.test("queue: a request that waits past queueTimeoutMs gets 429 with Retry-After", async () => {
  const mock = await startMockUpstream();
  const gw = await startGateway({
    services: { openai: { target: mock.url, keys: ["sk-one"], rps: 0.5, burst: 1, maxConn: 5 } },
    settings: { queueTimeoutMs: 300 },
  });
  try {
    const first = await post(gw.url);
    assertEquals(first.status, 200);
    await first.body?.cancel();
    const started = Date.now();
    const second = await post(gw.url);
    assertEquals(second.status, 429);
    assertEquals((await second.json()).error.code, "gateway_queue_timeout");
    assert(second.headers.get("retry-after") !== null);
    assertBetween(Date.now() - started, 250, 1000, "gave up at the queue deadline (ms)");
    assertEquals(mock.received.length, 1);
  } finally {
    await gw.close();
    await mock.close();
  }
});

Deno.test("queue: a client that disconnects while queued leaves the queue at once", async () => {
  const mock = await startMockUpstream({ latencyMs: 400 });
  const gw = await startGateway({
    services: {
      openai: { target: mock.url, keys: ["sk-one"], rps: 1000, burst: 1000, maxConn: 1 },
    },
  });
  try {
    const limiter = gw.gateway.runtimes.get("openai")!.limiter;
    const first = post(gw.url);
    await new Promise((r) => setTimeout(r, 50));
    const ac = new AbortController();
    const queued = post(gw.url, ac.signal).catch(() => "aborted");
    await new Promise((r) => setTimeout(r, 50));
    assertEquals(limiter.waiting, 1);
    ac.abort();
    assertEquals(await queued, "aborted");
    for (let i = 0; i < 20 && limiter.waiting > 0; i++) await new Promise((r) => setTimeout(r, 5));
    assertEquals(limiter.waiting, 0, "left the queue before the slot freed");
    const r = await first;
    await r.body?.cancel();
    await new Promise((r) => setTimeout(r, 50));
    assertEquals(mock.received.length, 1, "the aborted request never went upstream");
  } finally {
    await gw.close();
    await mock.close();
  }
});
