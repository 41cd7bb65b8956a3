/**
 * The key pool through the gateway, in process on the fake clock: rotation,
 * rests after 429, 401/403 and quota errors, retries on 5xx, the provider's
 * pause with one key, and a rest shared between instances. Times are exact.
 */
import assert from "node:assert/strict";
import { keyId } from "../../keys/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { chatRequest, jsonAnswer } from "../support/in_process.ts";
import { setup } from "../support/key_pacing_setup.ts";
import { scriptedUpstream } from "../support/scripted_upstream.ts";

/** A gateway over a scripted provider, with `keys`, on a fresh clock and KV. */
async function scripted(keys: string, settings: Record<string, unknown> = {}) {
  const clock = new FakeClock();
  const up = scriptedUpstream(clock);
  const t = await setup(up.answer, {}, keys, settings, { clock });
  const send = () => settle(clock, t.gateway.handler(chatRequest()), 100);
  return Object.assign(t, up, {
    send,
    /** The status of one chat completion, its body read. */
    async status(): Promise<number> {
      const r = await send();
      await r.body?.cancel();
      return r.status;
    },
    pool: () => t.gateway.runtimes.get("openai")!.pool,
  });
}

Deno.test("keys rotate round-robin across requests", async () => {
  await using t = await scripted("a,b,c");
  for (let i = 0; i < 6; i++) assert.equal(await t.status(), 200);
  assert.deepEqual(t.received.map((r) => r.key), ["a", "b", "c", "a", "b", "c"]);
});

Deno.test("429: the key cools down for the upstream's Retry-After and the request retries on another key", async () => {
  await using t = await scripted("a,b");
  t.script.set("a", [{ status: 429, headers: { "retry-after": "1" } }]);
  const t0 = t.clock.now();
  assert.equal(await t.status(), 200, "retried on key b");
  assert.deepEqual(t.received.map((r) => r.key), ["a", "b"]);
  while (t.clock.now() < t0 + 900) {
    assert.equal(await t.status(), 200);
    await t.clock.advance(100);
  }
  assert.equal(t.received.filter((r) => r.key === "a").length, 1, "a rests its 1 s");
  await t.clock.advance(t0 + 1000 - t.clock.now());
  assert.equal(await t.status(), 200);
  assert.equal(await t.status(), 200);
  assert(t.received.slice(-2).some((r) => r.key === "a"), "a is back in rotation at 1 s");
  assert.equal(t.logs.find((l) => l.event === "key_rest")?.key, await keyId("a"));
});

Deno.test("429 without a hint: the cool-down is 5 s, doubling per consecutive 429", async () => {
  await using t = await scripted("a,b", { maxRetries: 0 });
  t.script.set("a", [{ status: 429 }]);
  const t0 = t.clock.now();
  assert.equal(await t.status(), 429);
  const pool = t.pool();
  const first = pool.health(await keyId("a"))!;
  assert.deepEqual([first.until - t0, first.strikes], [5000, 1]);
  pool.report(pool.keys[0], { kind: "rate_limited", retryAfterMs: undefined }, t0);
  const second = pool.health(await keyId("a"))!;
  assert.deepEqual([second.until - t0, second.strikes], [10_000, 2]);
  // A success sent during the rest (picked from a view a moment old) ends nothing;
  // one sent after the rest has run out ends the streak.
  pool.report(pool.keys[0], { kind: "success" }, t0);
  assert.equal(pool.health(await keyId("a"))?.strikes, 2);
  pool.report(pool.keys[0], { kind: "success" }, second.until + 1);
  assert.equal(pool.health(await keyId("a")), undefined);
});

Deno.test("401: the request retries on another key; a probe carrying nothing of the client confirms the key and disables it; a restart remembers", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  // The provider knows only the key "good"; /v1/models is what the probe asks.
  const up = scriptedUpstream(
    clock,
    (key, req) =>
      key === "good"
        ? (new URL(req.url).pathname.endsWith("/models")
          ? jsonAnswer(200, { data: [] })
          : undefined)
        : jsonAnswer(401, { error: { message: "Incorrect API key provided" } }),
  );
  try {
    {
      await using t = await setup(up.answer, {}, "revoked,good", {}, { kv, clock });
      const r = await settle(clock, t.gateway.handler(chatRequest()), 100);
      assert.equal(r.status, 200);
      await r.body?.cancel();
      await t.gateway.runtimes.get("openai")!.pool.settled();
      const chat = up.received.filter((r) => r.path.endsWith("/chat/completions"));
      assert.deepEqual(chat.map((r) => r.key), ["revoked", "good"]);
      const probes = up.received.filter((r) => r.path === "/v1/models");
      assert.deepEqual(probes.map((r) => [r.method, r.key, r.body]), [["GET", "revoked", ""]]);
      const h = t.gateway.runtimes.get("openai")!.pool.health(await keyId("revoked"));
      assert.deepEqual([h?.state, h?.reason], ["disabled", "unauthorized"]);
    }
    up.received.length = 0;
    await using again = await setup(up.answer, {}, "revoked,good", {}, { kv, clock });
    for (let i = 0; i < 4; i++) {
      const r = await settle(clock, again.gateway.handler(chatRequest()), 100);
      assert.equal(r.status, 200);
      await r.body?.cancel();
    }
    assert.deepEqual(
      up.received.map((r) => r.key),
      ["good", "good", "good", "good"],
      "the disabled key stays out",
    );
    const stored = JSON.stringify(
      await Array.fromAsync(kv.list({ prefix: [] })),
      (_, v) => typeof v === "bigint" ? String(v) : v,
    );
    assert(!stored.includes("revoked") && !stored.includes('"good"'), "KV holds no raw key");
  } finally {
    kv.close();
  }
});

Deno.test("a quota error (429 insufficient_quota) disables the key like a 401", async () => {
  await using t = await scripted("a,b");
  t.script.set("a", [{
    status: 429,
    body:
      '{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}',
  }]);
  assert.equal(await t.status(), 200);
  const h = t.pool().health(await keyId("a"));
  assert.deepEqual([h?.state, h?.reason], ["disabled", "quota"]);
});

Deno.test("5xx: retried on another key after a back-off, without penalising the key", async () => {
  await using t = await scripted("a,b");
  t.script.set("a", [{ status: 503, body: '{"error":{"message":"overloaded"}}' }]);
  assert.equal(await t.status(), 200);
  assert.deepEqual(t.received.map((r) => r.key), ["a", "b"]);
  // 250 ms × (0.5 + random), random fixed at 0.5.
  assert.equal(t.received[1].at - t.received[0].at, 250, "the back-off before the retry");
  assert.equal(t.pool().health(await keyId("a")), undefined);
  assert.equal(t.logs.find((l) => l.status === 200 && l.id)?.attempts, 2);
});

Deno.test("400 and other 4xx come back as they are, without a retry", async () => {
  await using t = await scripted("a,b");
  t.script.set("*", [{
    status: 400,
    body: '{"error":{"message":"bad model","type":"invalid_request_error"}}',
  }]);
  const r = await t.send();
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.message, "bad model");
  assert.equal(t.received.length, 1);
});

Deno.test("after maxRetries the client gets the last upstream status, body and Retry-After; each retry took a token", async () => {
  await using t = await scripted("a,b,c,d", { maxRetries: 2 });
  // Not every key refuses with 429 (that would pause the provider): two 503s, then a 429.
  const busy = { status: 503, body: '{"error":{"message":"busy"}}' };
  const limited = {
    status: 429,
    headers: { "retry-after": "7" },
    body: '{"error":{"message":"last"}}',
  };
  t.script.set("*", [busy, busy, limited]);
  const r = await t.send();
  assert.equal(r.status, 429);
  assert.equal(r.headers.get("retry-after"), "7");
  assert.equal((await r.json()).error.message, "last");
  assert.equal(t.received.length, 3, "1 attempt + 2 retries");
  assert.equal(new Set(t.received.map((r) => r.key)).size, 3, "each on another key");
  assert.equal(t.gateway.runtimes.get("openai")!.limiter.stats.tokensSpent, 3);
});

Deno.test("the only key answers 429: the request waits out the pause the provider named and gets 200; past the deadline, 429 gateway_provider_backoff", async () => {
  await using t = await scripted("a", { maxRetries: 0, queueTimeoutMs: 3000 });
  t.script.set("a", [{ status: 429, headers: { "retry-after-ms": "600" } }]);
  const t0 = t.clock.now();
  assert.equal(await t.status(), 200, "waited for the provider");
  assert.equal(t.received[1].at - t0, 600, "the probe went when the named 600 ms ran out");
  assert.equal(t.received.length, 2, "the 429, then one probe");
  t.script.set("a", [{ status: 429, headers: { "retry-after": "30" } }]);
  assert.equal(await t.status(), 429, "the upstream's 429: 30 s is past the deadline");
  const r = await t.send();
  assert.equal(r.status, 429);
  assert.equal((await r.json()).error.code, "gateway_provider_backoff");
  assert.equal(r.headers.get("retry-after"), "30", "Retry-After until the pause ends");
  assert.equal(t.received.length, 3, "nothing sent while paused");
});

Deno.test("a key cooled by one instance's 429 is skipped by every instance within 1 s, until the same moment", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  const up = scriptedUpstream(clock);
  try {
    await using one = await setup(up.answer, {}, "a,b", {}, { kv, clock });
    await using two = await setup(up.answer, {}, "a,b", {}, { kv, clock });
    const send = async (g: typeof one) => {
      const r = await settle(clock, g.gateway.handler(chatRequest()), 100);
      await r.body?.cancel();
      return r.status;
    };
    assert.equal(await send(two), 200, "the second instance's view of key health is warm");
    up.script.set("a", [{ status: 429, headers: { "retry-after": "3" } }]);
    up.received.length = 0;
    assert.equal(await send(one), 200);
    const coolAt = clock.now();
    const pool = one.gateway.runtimes.get("openai")!.pool;
    await pool.settled();
    const until = pool.health(await keyId("a"))!.until;
    await clock.advance(1000);
    up.received.length = 0;
    for (let i = 0; i < 6; i++) assert.equal(await send(two), 200);
    assert(clock.now() - coolAt < 3000);
    assert.equal(
      up.received.filter((r) => r.key === "a").length,
      0,
      "the second instance skipped key a",
    );
    const seen = two.gateway.runtimes.get("openai")!.pool.health(await keyId("a"));
    assert.equal(seen?.until, until, "the rest ends at the same moment everywhere");
  } finally {
    kv.close();
  }
});
