import assert from "node:assert/strict";
import { FakeClock, settle } from "../support/fake_clock.ts";
import {
  chatRequest,
  endlessStream,
  fakeUpstream,
  inProcessGateway,
  jsonAnswer,
} from "../support/in_process.ts";
import { faultyKv } from "../support/faulty_kv.ts";
import { shutdownShares } from "../../gateway/gateway.ts";

Deno.test("a request that arrives while the instance drains gets 503 gateway_closing, Retry-After: 1 and Connection: close; nothing goes upstream", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  const upstream = fakeUpstream(() => jsonAnswer(200, {}));
  const gateway = await inProcessGateway(
    { services: { openai: { target: "http://upstream.test", style: "openai" } } },
    { OPENAI_API_KEYS: "sk-one" },
    { kv, clock, fetch: upstream.fetch },
  );
  try {
    const draining = gateway.drain(1000);
    const r = await gateway.handler(chatRequest());
    assert.equal(r.status, 503);
    assert.equal(r.headers.get("retry-after"), "1");
    assert.equal(r.headers.get("connection"), "close");
    assert.equal((await r.json()).error.code, "gateway_closing");
    assert.equal(upstream.calls.length, 0);
    await settle(clock, draining);
  } finally {
    await gateway.close();
    kv.close();
  }
});

Deno.test("shutdownShares(): the writes keep three KV round trips (250 ms to 1.5 s), the drain what is left up to drainMs", () => {
  assert.deepEqual(shutdownShares(4500, 4000, 0), { drainMs: 3750, graceMs: 500 });
  assert.deepEqual(shutdownShares(4500, 4000, 250), { drainMs: 3250, graceMs: 500 });
  assert.deepEqual(shutdownShares(4500, 1500, 250), { drainMs: 1500, graceMs: 500 });
  assert.deepEqual(shutdownShares(4500, 4000, 2000), { drainMs: 2500, graceMs: 500 });
  assert.deepEqual(shutdownShares(800, 4000, 0), { drainMs: 412.5, graceMs: 137.5 });
});

Deno.test("one deadline from the signal: with KV 250 ms away and a stream that never ends, the drain, the hand-backs and the writes fit in 4.5 s", async () => {
  const clock = new FakeClock();
  const store = await Deno.openKv(":memory:");
  const faults = { latencyMs: 0, failing: false, ops: 0 };
  const kv = faultyKv(store, faults, clock);
  // Every answer is a stream the upstream never ends.
  const fetch = endlessStream();
  const gateway = await inProcessGateway(
    { services: { openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 4 } } },
    { OPENAI_API_KEYS: "sk-one" },
    { kv, clock, fetch },
  );
  try {
    const res = await settle(clock, gateway.handler(chatRequest({ stream: true })));
    const reading = res.text().catch((e) => `error: ${e}`);
    faults.latencyMs = 250;
    // Let KV's latency be seen, as a busy instance sees it before the signal.
    for (let i = 0; i < 4; i++) {
      await settle(
        clock,
        kv.get(["probe"]).then(() => gateway.kvStatus.took(250)),
      );
    }
    const signalled = clock.now();
    const report = await settle(clock, gateway.drain(4500), 50, 10_000);
    const took = clock.now() - signalled;
    assert.ok(took <= 4500, `the whole shutdown took ${took} ms`);
    assert.equal(report.ended, 1, "the open stream was ended");
    assert.match(await settle(clock, reading), /shutting down/);
  } finally {
    await gateway.close();
    store.close();
  }
});
