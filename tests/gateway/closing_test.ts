import assert from "node:assert/strict";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { chatRequest, fakeUpstream, inProcessGateway, jsonAnswer } from "../support/in_process.ts";

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
