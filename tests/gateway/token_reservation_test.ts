/**
 * No reservation a single request can inflate (security review H2): a key's
 * tokens per minute are shared by everyone, so one big body must never
 * block a key. The meter alone on a KV ledger, then the gateway in process.
 */
import assert from "node:assert/strict";
import { estimateInputTokens, perMinuteLimits, TokenMeter } from "../../keys/mod.ts";
import { KvCapacityStore } from "../../limiter/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import { fakeUpstream, inProcessGateway, jsonAnswer } from "../support/in_process.ts";

const TWO_MIB_BODY = JSON.stringify({
  model: "m",
  messages: [{ role: "user", content: "x".repeat(2 * 1024 * 1024) }],
});

function meterOnLedger(kv: Deno.Kv, clock: FakeClock, tpm: number) {
  const limits = perMinuteLimits(tpm, 2000);
  const store = new KvCapacityStore(kv, { service: "s", key: "k", per: "tokens" }, limits, {
    instanceId: "i",
    clock,
  });
  return new TokenMeter({ store, clock, tpm, burst: limits.burst, leaseMs: 2000 });
}

Deno.test("estimateInputTokens errs low for a huge body: 4 bytes a token for the first 64 KiB, 16 after", () => {
  assert.equal(estimateInputTokens(64 * 1024), 16_384);
  assert.equal(estimateInputTokens(2 * 1024 * 1024), 16_384 + (2 * 1024 * 1024 - 65_536) / 16);
});

Deno.test("TokenMeter: a cost above the key's burst is refused as too large, with nothing reserved on the ledger", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  try {
    const meter = meterOnLedger(kv, clock, 6000);
    const refused = await meter.take(100_000, clock.now() + 4000);
    assert.equal(refused.ok, false);
    assert.equal("tooLarge" in refused && refused.tooLarge, true);
    assert.deepEqual(
      await Array.fromAsync(kv.list({ prefix: [] })),
      [],
      "the ledger was not touched",
    );
    assert.deepEqual(
      await meter.take(100, clock.now() + 10),
      { ok: true },
      "the next goes at once",
    );
  } finally {
    kv.close();
  }
});

Deno.test("TokenMeter: a request that gives up hands back what it reserved, so the next one does not wait behind it", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  try {
    const meter = meterOnLedger(kv, clock, 6000); // 100 tokens a second, burst 5700
    assert.deepEqual(await meter.take(5700, clock.now() + 100), { ok: true }, "the burst");
    // 5000 more would fall due 50 s from now: past this request's 4 s deadline.
    const gaveUp = await meter.take(5000, clock.now() + 4000);
    assert.equal(gaveUp.ok, false);
    // Had the 5000 stayed on the ledger, 100 more would be due 51 s out; handed back, about 1 s.
    const t0 = clock.now();
    const next = meter.take(100, t0 + 3000);
    await settle(clock, next, 50, 3000);
    assert.deepEqual(await next, { ok: true });
    assert.ok(clock.now() - t0 <= 1500, `waited ${clock.now() - t0} ms`);
  } finally {
    kv.close();
  }
});

Deno.test("TokenMeter: what an answer used beyond its estimate is charged up to one burst, never more", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  try {
    const meter = meterOnLedger(kv, clock, 6000);
    meter.charge(10_000_000);
    await settle(clock, Promise.resolve(), 50);
    // A burst's debt is paid off within a minute at the key's rate: a small request waits at most that.
    const t0 = clock.now();
    const next = meter.take(10, t0 + 70_000);
    await settle(clock, next, 100, 70_000);
    assert.deepEqual(await next, { ok: true });
    assert.ok(clock.now() - t0 <= 60_000, `waited ${clock.now() - t0} ms`);
  } finally {
    kv.close();
  }
});

async function gatewayWith(service: Record<string, unknown>, headers: Record<string, string> = {}) {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  const upstream = fakeUpstream(() => {
    const res = jsonAnswer(200, { choices: [], usage: { prompt_tokens: 5, completion_tokens: 1 } });
    for (const [k, v] of Object.entries(headers)) res.headers.set(k, v);
    return res;
  });
  const gateway = await inProcessGateway(
    {
      services: {
        openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 10, ...service },
      },
    },
    { OPENAI_API_KEYS: "sk-a,sk-b" },
    { kv, clock, fetch: upstream.fetch },
  );
  const send = async (body: string) => {
    const req = new Request("http://gw/openai/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
      body,
    });
    const res = await settle(clock, gateway.handler(req));
    return {
      status: res.status,
      retryAfter: res.headers.get("retry-after"),
      body: await res.json(),
    };
  };
  return {
    calls: upstream.calls,
    send,
    async [Symbol.asyncDispose]() {
      await gateway.close();
      kv.close();
    },
  };
}

const small = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] });

Deno.test("H2: with keyQuota.tpm, a 2 MiB body gets 413 request_too_large at once, nothing goes upstream, and the next request goes without waiting", async () => {
  await using g = await gatewayWith({ keyQuota: { tpm: 6000 } });
  for (let i = 0; i < 2; i++) {
    const big = await g.send(TWO_MIB_BODY);
    assert.equal(big.status, 413);
    assert.equal(big.body.error.code, "request_too_large");
    assert.equal(big.body.error.type, "invalid_request_error");
  }
  assert.equal(g.calls.length, 0);
  const next = await g.send(small);
  assert.equal(next.status, 200);
  assert.equal(next.retryAfter, null);
});

Deno.test("H2: with no keyQuota, once the provider's headers state a tokens-per-minute limit, a 2 MiB body is refused the same way and blocks nobody", async () => {
  await using g = await gatewayWith({}, {
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-tokens": "29990",
    "x-ratelimit-reset-tokens": "20ms",
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-reset-requests": "120ms",
  });
  assert.equal((await g.send(small)).status, 200);
  assert.equal((await g.send(small)).status, 200);
  const big = await g.send(TWO_MIB_BODY);
  assert.equal(big.status, 413);
  const after = await g.send(small);
  assert.equal(after.status, 200);
  assert.equal(after.retryAfter, null);
  assert.equal(g.calls.length, 3, "the big body never reached the provider");
});
