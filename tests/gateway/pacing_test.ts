/**
 * A service's pace, in-flight cap and queue through the gateway, in process
 * on the fake clock: when each request leaves is exact, not a window.
 */
import assert from "node:assert/strict";
import { FakeClock, flush, settle } from "../support/fake_clock.ts";
import { type Answer, chatRequest, gatewayOver } from "../support/in_process.ts";
import { PASSWORD } from "../support/harness.ts";
import { timedProvider } from "../support/timed_provider.ts";

/** A gateway with openai (and an Anthropic-shaped claude) over `answer`, on `clock`. */
async function paced(
  clock: FakeClock,
  answer: Answer,
  limits: Record<string, unknown>,
  settings: Record<string, unknown> = {},
) {
  const service = { target: "http://upstream.test", rateLimitHeaders: "none", ...limits };
  const t = await gatewayOver(
    answer,
    { ...settings, services: { openai: service, claude: { ...service, style: "anthropic" } } },
    { OPENAI_API_KEYS: "sk-one", CLAUDE_API_KEYS: "sk-one" },
    { clock },
  );
  return Object.assign(t, { limiter: t.gateway.runtimes.get("openai")!.limiter });
}

/**
 * Lets queued callbacks and timers due now run until `done()` (a lease is
 * asked for one turn later, and a KV round trip takes a few); no time passes.
 */
async function until(clock: FakeClock, done: () => boolean): Promise<void> {
  for (let i = 0; i < 50 && !done(); i++) await clock.advance(0);
  assert(done(), "never happened");
}

const claudeRequest = (signal?: AbortSignal) =>
  new Request("http://gw/claude/v1/messages", {
    method: "POST",
    headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
    body: "{}",
    signal,
  });

for (const limitMode of ["local", "shared"] as const) {
  Deno.test(`pacing (${limitMode}): burst 8, rps 4, 20 concurrent → 8 at once, then one every 250 ms`, async () => {
    const clock = new FakeClock();
    const up = timedProvider(clock);
    await using t = await paced(clock, up.answer, { rps: 4, burst: 8, maxConn: 20 }, {
      limitMode,
    });
    const t0 = clock.now();
    const all = await settle(
      clock,
      Promise.all(Array.from({ length: 20 }, () => t.gateway.handler(chatRequest()))),
      1000, // timers fire at their own times whatever the step
    );
    for (const r of all) {
      assert.equal(r.status, 200);
      await r.body?.cancel();
    }
    const at = up.sent.map((s) => s - t0);
    assert.deepEqual(at.slice(0, 8), [0, 0, 0, 0, 0, 0, 0, 0], "the burst left at once");
    assert.deepEqual(
      at.slice(8),
      Array.from({ length: 12 }, (_, i) => 250 * (i + 1)),
      "then 4 per second",
    );
  });
}

Deno.test("pacing: requests in flight never exceed maxConn; a stream holds its slot to the end", async () => {
  const clock = new FakeClock();
  const up = timedProvider(clock, { latencyMs: 0, chunks: 3, chunkMs: 50 });
  await using t = await paced(clock, up.answer, { rps: 1000, burst: 1000, maxConn: 2 });
  const streams = Array.from({ length: 8 }, async () => {
    const r = await t.gateway.handler(chatRequest({ stream: true }));
    return await r.text();
  });
  const texts = await settle(clock, Promise.all(streams), 100);
  for (const text of texts) assert(text.includes("[DONE]"));
  assert.equal(up.sent.length, 8);
  assert.equal(up.maxInFlight(), 2, "upstream high-water mark");
});

Deno.test("queue: past queueLimit a request gets 429 with Retry-After in the provider's shape", async () => {
  const clock = new FakeClock();
  const up = timedProvider(clock, { latencyMs: 300 });
  await using t = await paced(clock, up.answer, { rps: 1000, burst: 1000, maxConn: 1 }, {
    queueLimit: 2,
  });
  const shapes = [[() => chatRequest(), "openai"], [() => claudeRequest(), "claude"]] as const;
  for (const [request, service] of shapes) {
    const limiter = t.gateway.runtimes.get(service)!.limiter;
    // Each answer read whole as it comes, as a client does: the slot goes back at its end.
    const status = () =>
      t.gateway.handler(request()).then(async (r) => (await r.arrayBuffer(), r.status));
    const sent = up.sent.length;
    const held = [status()]; // in flight
    await until(clock, () => up.sent.length > sent);
    held.push(status(), status()); // queued: the queue is full
    await until(clock, () => limiter.waiting === 2);
    const refused = await t.gateway.handler(request());
    assert.equal(refused.status, 429);
    assert(Number(refused.headers.get("retry-after")) >= 1, "Retry-After in seconds");
    const body = await refused.json();
    if (service === "openai") {
      assert.deepEqual([body.error.type, body.error.code], [
        "rate_limit_error",
        "gateway_queue_full",
      ]);
    } else {
      assert.deepEqual(
        [body.type, body.error.type],
        ["error", "rate_limit_error"],
        "Anthropic's shape",
      );
    }
    assert.deepEqual(await settle(clock, Promise.all(held), 100), [200, 200, 200]);
  }
});

Deno.test("queue: a request that waits past queueTimeoutMs gets 429 with Retry-After", async () => {
  const clock = new FakeClock();
  const up = timedProvider(clock);
  await using t = await paced(clock, up.answer, { rps: 0.5, burst: 1, maxConn: 5 }, {
    queueTimeoutMs: 300,
  });
  const first = await settle(clock, t.gateway.handler(chatRequest()), 100);
  assert.equal(first.status, 200);
  await first.body?.cancel();
  const t0 = clock.now();
  const second = await settle(clock, t.gateway.handler(chatRequest()), 100);
  assert.equal(second.status, 429);
  assert.equal((await second.json()).error.code, "gateway_queue_timeout");
  assert.notEqual(second.headers.get("retry-after"), null);
  // Deadlines fire on one sweeper, up to its 100 ms resolution late, never early.
  assert(clock.now() - t0 >= 300 && clock.now() - t0 <= 400, `gave up at ${clock.now() - t0} ms`);
  assert.equal(up.sent.length, 1);
});

Deno.test("queue: a client that disconnects while queued leaves the queue at once", async () => {
  const clock = new FakeClock();
  const up = timedProvider(clock, { latencyMs: 400 });
  await using t = await paced(clock, up.answer, { rps: 1000, burst: 1000, maxConn: 1 });
  const first = t.gateway.handler(chatRequest());
  await until(clock, () => up.sent.length === 1);
  const client = new AbortController();
  const queued = t.gateway.handler(new Request(chatRequest(), { signal: client.signal }));
  await until(clock, () => t.limiter.waiting === 1);
  client.abort();
  await flush();
  assert.equal(t.limiter.waiting, 0, "left the queue before the slot freed, no time passed");
  assert.equal((await queued).status, 499);
  const r = await settle(clock, first, 100);
  await r.body?.cancel();
  await clock.advance(1000);
  assert.equal(up.sent.length, 1, "the aborted request never went upstream");
});

Deno.test("shutdown: queued requests get 503 gateway_closing at once, the one in flight completes", async () => {
  const clock = new FakeClock();
  const up = timedProvider(clock, { latencyMs: 300 });
  await using t = await paced(clock, up.answer, { rps: 1000, burst: 1000, maxConn: 1 });
  const inFlight = t.gateway.handler(chatRequest());
  await until(clock, () => up.sent.length === 1);
  const queued = [t.gateway.handler(chatRequest()), t.gateway.handler(chatRequest())];
  await until(clock, () => t.limiter.waiting === 2);
  const closing = t.gateway.close();
  const answers = await Promise.all(queued); // no time passes: refused at once
  for (const r of answers) {
    assert.equal(r.status, 503);
    assert.equal((await r.json()).error.code, "gateway_closing");
  }
  const first = await settle(clock, inFlight, 100);
  assert.equal(first.status, 200);
  await first.body?.cancel();
  await settle(clock, closing, 100);
  assert.equal(up.sent.length, 1, "the queued requests never went upstream");
});
