import assert from "node:assert/strict";
import { auth, chatBody, postChat, startMocked } from "../support/harness.ts";

for (const limitMode of ["local", "shared"] as const) {
  Deno.test(`pacing (${limitMode}): burst 8, rps 4, 20 concurrent → 8 at once, the rest at about 4 per second`, async () => {
    await using t = await startMocked({}, (url) => ({
      services: { openai: { target: url, keys: ["sk-one"], rps: 4, burst: 8, maxConn: 20 } },
      settings: { limitMode },
    }));
    const { mock, gw } = t;
    const started = Date.now();
    const all = await Promise.all(Array.from({ length: 20 }, () => postChat(gw.url)));
    for (const r of all) {
      assert.deepEqual(r.status, 200);
      await r.body?.cancel();
    }
    const at = mock.received.map((r) => r.at - started).sort((a, b) => a - b);
    assert(at[7] < 150, `the first 8 left at once (8th at ${at[7]} ms)`);
    assert(at[8] >= 150, `the 9th waited for a token (at ${at[8]} ms)`);
    // 12 more at 4/s: the last about 3 s after the start.
    assert.ok(
      at[19] >= 2600 && at[19] <= 3600,
      `${"the 20th request's arrival (ms)"}: ${at[19]} not in 2600..3600`,
    );
    const spacing = (at[19] - at[8]) / 11;
    assert.ok(
      spacing >= 200 && spacing <= 300,
      `${"spacing after the burst (ms)"}: ${spacing} not in 200..300`,
    );
  });
}

Deno.test("pacing: requests in flight never exceed maxConn; a stream holds its slot to the end", async () => {
  await using t = await startMocked({ chunkDelayMs: 50, chunks: 3 }, (url) => ({
    services: {
      openai: { target: url, keys: ["sk-one"], rps: 1000, burst: 1000, maxConn: 2 },
    },
  }));
  const { mock, gw } = t;
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
  assert.deepEqual(mock.received.length, 8);
  assert.deepEqual(mock.maxInFlight, 2, "upstream high-water mark");
});

Deno.test("queue: past queueLimit a request gets 429 with Retry-After in the provider's shape", async () => {
  await using t = await startMocked({ latencyMs: 300 }, (url) => ({
    services: {
      openai: { target: url, keys: ["sk-one"], rps: 1000, burst: 1000, maxConn: 1 },
      claude: {
        target: url,
        keys: ["sk-one"],
        rps: 1000,
        burst: 1000,
        maxConn: 1,
        style: "anthropic",
      },
    },
    settings: { queueLimit: 2 },
  }));
  const { gw } = t;
  const pause = () => new Promise((r) => setTimeout(r, 50));
  const held = [postChat(gw.url)]; // in flight
  await pause();
  held.push(postChat(gw.url), postChat(gw.url)); // queued: the queue is full
  await pause();
  const refused = await postChat(gw.url);
  assert.deepEqual(refused.status, 429);
  assert(Number(refused.headers.get("retry-after")) >= 1, "Retry-After in seconds");
  const body = await refused.json();
  assert.deepEqual(body.error.type, "rate_limit_error");
  assert.deepEqual(body.error.code, "gateway_queue_full");
  for (const r of await Promise.all(held)) {
    assert.deepEqual(r.status, 200);
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
  assert.deepEqual(cr.status, 429);
  const cb = await cr.json();
  assert.deepEqual(cb.type, "error");
  assert.deepEqual(cb.error.type, "rate_limit_error");
  for (const r of await Promise.all(c)) await r.body?.cancel();
});

Deno.test("queue: a request that waits past queueTimeoutMs gets 429 with Retry-After", async () => {
  await using t = await startMocked({}, (url) => ({
    services: { openai: { target: url, keys: ["sk-one"], rps: 0.5, burst: 1, maxConn: 5 } },
    settings: { queueTimeoutMs: 300 },
  }));
  const { mock, gw } = t;
  const first = await postChat(gw.url);
  assert.deepEqual(first.status, 200);
  await first.body?.cancel();
  const started = Date.now();
  const second = await postChat(gw.url);
  assert.deepEqual(second.status, 429);
  assert.deepEqual((await second.json()).error.code, "gateway_queue_timeout");
  assert(second.headers.get("retry-after") !== null);
  assert.ok(
    Date.now() - started >= 250 && Date.now() - started <= 1000,
    `${"gave up at the queue deadline (ms)"}: ${Date.now() - started} not in 250..1000`,
  );
  assert.deepEqual(mock.received.length, 1);
});

Deno.test("queue: a client that disconnects while queued leaves the queue at once", async () => {
  await using t = await startMocked({ latencyMs: 400 }, (url) => ({
    services: {
      openai: { target: url, keys: ["sk-one"], rps: 1000, burst: 1000, maxConn: 1 },
    },
  }));
  const { mock, gw } = t;
  const limiter = gw.gateway.runtimes.get("openai")!.limiter;
  const first = postChat(gw.url);
  await new Promise((r) => setTimeout(r, 50));
  const ac = new AbortController();
  const queued = postChat(gw.url, ac.signal).catch(() => "aborted");
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(limiter.waiting, 1);
  ac.abort();
  assert.deepEqual(await queued, "aborted");
  for (let i = 0; i < 20 && limiter.waiting > 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(limiter.waiting, 0, "left the queue before the slot freed");
  const r = await first;
  await r.body?.cancel();
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(mock.received.length, 1, "the aborted request never went upstream");
});

Deno.test("shutdown: queued requests get 503 gateway_closing at once, the one in flight completes", async () => {
  await using t = await startMocked({ latencyMs: 300 }, (url) => ({
    services: { openai: { target: url, keys: ["sk-one"], rps: 1000, burst: 1000, maxConn: 1 } },
  }));
  const { mock, gw } = t;
  const inFlight = postChat(gw.url);
  await new Promise((r) => setTimeout(r, 100));
  const queued = [postChat(gw.url), postChat(gw.url)];
  await new Promise((r) => setTimeout(r, 50));
  const closed = Date.now();
  const closing = gw.gateway.close();
  const answers = await Promise.all(queued);
  assert(Date.now() - closed < 150, "refused at once, not after the queue timeout");
  for (const r of answers) {
    assert.deepEqual(r.status, 503);
    assert.deepEqual((await r.json()).error.code, "gateway_closing");
  }
  const first = await inFlight;
  assert.deepEqual(first.status, 200);
  await first.body?.cancel();
  await closing;
  assert.deepEqual(mock.received.length, 1, "the queued requests never went upstream");
});
