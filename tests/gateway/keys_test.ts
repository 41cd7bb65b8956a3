import assert from "node:assert/strict";
import { type MockOptions, startMockUpstream } from "../support/mock_upstream.ts";
import { drain, postChat, startGateway, startMocked } from "../support/harness.ts";
import { keyId } from "../../keys/mod.ts";

const FAST = { rps: 1000, burst: 1000, maxConn: 50 };

/** An openai service in front of `url`, with keys "a" and "b" and limits far above the load. */
const twoKeys = (url: string) => ({ openai: { target: url, keys: ["a", "b"], ...FAST } });

/** A mock provider and, in front of it, a gateway whose openai service has keys "a" and "b". */
function startTwoKeys(mockOptions: MockOptions = {}, settings?: Record<string, unknown>) {
  return startMocked(mockOptions, (url) => ({ services: twoKeys(url), settings }));
}

Deno.test("keys rotate round-robin across requests", async () => {
  await using t = await startMocked({}, (url) => ({
    services: { openai: { target: url, keys: ["a", "b", "c"], ...FAST } },
  }));
  const { mock, gw } = t;
  for (let i = 0; i < 6; i++) assert.deepEqual(await drain(await postChat(gw.url)), 200);
  assert.deepEqual(mock.received.map((r) => r.key), ["a", "b", "c", "a", "b", "c"]);
});

Deno.test("429: the key cools down for the upstream's Retry-After and the request retries on another key", async () => {
  await using t = await startTwoKeys({ perKeyRps: 1, retryAfterSec: 1 });
  const { mock, gw } = t;
  mock.script.set("a", [{
    status: 429,
    headers: { "retry-after": "1" },
    body: '{"error":{"message":"slow down"}}',
  }]);
  const started = Date.now();
  assert.deepEqual(await drain(await postChat(gw.url)), 200, "retried on key b");
  assert.deepEqual(mock.received.map((r) => r.key), ["a", "b"]);
  // For the next second, only b is used — a is cooling.
  mock.options.perKeyRps = undefined;
  while (Date.now() - started < 800) {
    assert.deepEqual(await drain(await postChat(gw.url)), 200);
    await new Promise((r) => setTimeout(r, 100));
  }
  const onA = mock.received.filter((r) => r.key === "a");
  assert.deepEqual(onA.length, 1, "no request on the cooling key before its Retry-After ended");
  await new Promise((r) => setTimeout(r, 1100 - (Date.now() - started)));
  await drain(await postChat(gw.url));
  await drain(await postChat(gw.url));
  assert(
    mock.received.slice(-2).some((r) => r.key === "a"),
    "a is back in rotation after its rest",
  );
  const rest = gw.logs.find((l) => l.event === "key_rest");
  assert.deepEqual(rest?.key, await keyId("a"));
});

Deno.test("429 without a hint: the cool-down is 5 s, doubling per consecutive 429", async () => {
  await using t = await startTwoKeys({}, { maxRetries: 0 });
  const { mock, gw } = t;
  const pool = gw.gateway.runtimes.get("openai")!.pool;
  const idA = await keyId("a");
  mock.script.set("a", [{ status: 429 }]);
  const t0 = Date.now();
  assert.deepEqual(await drain(await postChat(gw.url)), 429);
  const first = pool.health(idA)!;
  assert(Math.abs(first.until - t0 - 5000) < 500, `first rest ${first.until - t0} ms`);
  assert.deepEqual(first.strikes, 1);
  pool.report(pool.keys[0], { kind: "rate_limited", retryAfterMs: undefined }, Date.now());
  const second = pool.health(idA)!;
  assert(
    Math.abs(second.until - Date.now() - 10_000) < 500,
    `second rest ${second.until - Date.now()} ms`,
  );
  // A success sent during the rest (picked from a view a moment old) ends nothing;
  // one sent after the rest has run out ends the streak.
  pool.report(pool.keys[0], { kind: "success" }, Date.now());
  assert.deepEqual(pool.health(idA)?.strikes, 2);
  pool.report(pool.keys[0], { kind: "success" }, second.until + 1);
  assert.deepEqual(pool.health(idA), undefined);
});

Deno.test("401: the request retries on another key; a probe carrying nothing of the client confirms the key and disables it; a restart remembers", async () => {
  const mock = await startMockUpstream({ keys: ["good"] });
  const kv = await Deno.openKv(":memory:");
  try {
    const gw = await startGateway({
      kv,
      services: { openai: { target: mock.url, keys: ["revoked", "good"], ...FAST } },
    });
    assert.deepEqual(await drain(await postChat(gw.url)), 200);
    await gw.gateway.runtimes.get("openai")!.pool.settled();
    const chat = mock.received.filter((r) => r.path.endsWith("/chat/completions"));
    assert.deepEqual(chat.map((r) => r.key), ["revoked", "good"]);
    const probes = mock.received.filter((r) => r.path === "/v1/models");
    assert.deepEqual(probes.map((r) => [r.method, r.key, r.body]), [["GET", "revoked", ""]]);
    const h = gw.gateway.runtimes.get("openai")!.pool.health(await keyId("revoked"));
    assert.deepEqual([h?.state, h?.reason], ["disabled", "unauthorized"]);
    await gw.close();

    const again = await startGateway({
      kv,
      services: { openai: { target: mock.url, keys: ["revoked", "good"], ...FAST } },
    });
    mock.reset();
    for (let i = 0; i < 4; i++) assert.deepEqual(await drain(await postChat(again.url)), 200);
    assert.deepEqual(
      mock.received.map((r) => r.key),
      ["good", "good", "good", "good"],
      "the disabled key stays out",
    );
    const stored = JSON.stringify(
      await Array.fromAsync(kv.list({ prefix: [] })),
      (_, v) => typeof v === "bigint" ? String(v) : v,
    );
    assert(!stored.includes("revoked") && !stored.includes('"good"'), "KV holds no raw key");
    await again.close();
  } finally {
    kv.close();
    await mock.close();
  }
});

Deno.test("a quota error (429 insufficient_quota) disables the key like a 401", async () => {
  await using t = await startTwoKeys();
  const { mock, gw } = t;
  mock.script.set("a", [{
    status: 429,
    body:
      '{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}',
  }]);
  assert.deepEqual(await drain(await postChat(gw.url)), 200);
  const h = gw.gateway.runtimes.get("openai")!.pool.health(await keyId("a"));
  assert.deepEqual(h?.state, "disabled");
  assert.deepEqual(h?.reason, "quota");
});

Deno.test("5xx: retried on another key with backoff, without penalising the key", async () => {
  await using t = await startTwoKeys();
  const { mock, gw } = t;
  mock.script.set("a", [{ status: 503, body: '{"error":{"message":"overloaded"}}' }]);
  assert.deepEqual(await drain(await postChat(gw.url)), 200);
  assert.deepEqual(mock.received.map((r) => r.key), ["a", "b"]);
  const gap = mock.received[1].at - mock.received[0].at;
  assert(gap >= 100, `backoff before the retry (${gap} ms)`);
  assert.deepEqual(gw.gateway.runtimes.get("openai")!.pool.health(await keyId("a")), undefined);
  const log = gw.logs.find((l) => l.status === 200 && l.id);
  assert.deepEqual(log?.attempts, 2);
});

Deno.test("400 and other 4xx come back as they are, without a retry", async () => {
  await using t = await startTwoKeys();
  const { mock, gw } = t;
  mock.script.set("*", [{
    status: 400,
    body: '{"error":{"message":"bad model","type":"invalid_request_error"}}',
  }]);
  const r = await postChat(gw.url);
  assert.deepEqual(r.status, 400);
  assert.deepEqual((await r.json()).error.message, "bad model");
  assert.deepEqual(mock.received.length, 1);
});

Deno.test("after maxRetries the client gets the last upstream status, body and Retry-After; each retry took a token", async () => {
  await using t = await startMocked({}, (url) => ({
    services: { openai: { target: url, keys: ["a", "b", "c", "d"], ...FAST } },
    settings: { maxRetries: 2 },
  }));
  const { mock, gw } = t;
  // Not every key refuses with 429 (that would pause the provider): two 503s, then a 429.
  const busy = { status: 503, body: '{"error":{"message":"busy"}}' };
  const limited = {
    status: 429,
    headers: { "retry-after": "7" },
    body: '{"error":{"message":"last"}}',
  };
  mock.script.set("*", [busy, busy, limited]);
  const r = await postChat(gw.url);
  assert.deepEqual(r.status, 429);
  assert.deepEqual(r.headers.get("retry-after"), "7");
  assert.deepEqual((await r.json()).error.message, "last");
  assert.deepEqual(mock.received.length, 3, "1 attempt + 2 retries");
  assert.deepEqual(new Set(mock.received.map((r) => r.key)).size, 3, "each on another key");
  assert.deepEqual(gw.gateway.runtimes.get("openai")!.limiter.stats.tokensSpent, 3);
});

Deno.test("the only key answers 429: the request waits out the pause the provider named and gets 200; past the deadline, 429 gateway_provider_backoff", async () => {
  await using t = await startMocked({}, (url) => ({
    services: { openai: { target: url, keys: ["a"], ...FAST } },
    settings: { maxRetries: 0, queueTimeoutMs: 3000 },
  }));
  const { mock, gw } = t;
  mock.script.set("a", [{ status: 429, headers: { "retry-after-ms": "600" } }]);
  const t0 = Date.now();
  assert.deepEqual(await drain(await postChat(gw.url)), 200, "waited for the provider");
  assert(Date.now() - t0 >= 450, `waited ${Date.now() - t0} ms`);
  assert.deepEqual(mock.received.length, 2, "the 429, then one probe");
  mock.script.set("a", [{ status: 429, headers: { "retry-after": "30" } }]);
  assert.deepEqual(
    await drain(await postChat(gw.url)),
    429,
    "the upstream's 429: 30 s is past the deadline",
  );
  const r = await postChat(gw.url);
  assert.deepEqual(r.status, 429);
  assert.deepEqual((await r.json()).error.code, "gateway_provider_backoff");
  assert(Number(r.headers.get("retry-after")) >= 28, "Retry-After until the pause ends");
  assert.deepEqual(mock.received.length, 3, "nothing sent while paused");
});

Deno.test("a key cooled by one instance's 429 is skipped by every instance within 1 s, until the same moment", async () => {
  const mock = await startMockUpstream();
  const kv = await Deno.openKv(":memory:");
  const services = twoKeys(mock.url);
  const one = await startGateway({ kv, services });
  const two = await startGateway({ kv, services });
  try {
    // Warm the second instance's view of key health, then cool key a through the first.
    assert.deepEqual(await drain(await postChat(two.url)), 200);
    mock.reset();
    mock.script.set("a", [{ status: 429, headers: { "retry-after": "3" } }]);
    assert.deepEqual(await drain(await postChat(one.url)), 200);
    const coolAt = Date.now();
    const pool = one.gateway.runtimes.get("openai")!.pool;
    await pool.settled();
    const until = pool.health(await keyId("a"))!.until;
    await new Promise((r) => setTimeout(r, 1000));
    mock.reset();
    for (let i = 0; i < 6; i++) assert.deepEqual(await drain(await postChat(two.url)), 200);
    assert(Date.now() - coolAt < 3000);
    assert.deepEqual(
      mock.received.filter((r) => r.key === "a").length,
      0,
      "the second instance skipped key a",
    );
    const seen = two.gateway.runtimes.get("openai")!.pool.health(await keyId("a"));
    assert.deepEqual(seen?.until, until, "the rest ends at the same moment everywhere");
  } finally {
    await one.close();
    await two.close();
    kv.close();
    await mock.close();
  }
});
