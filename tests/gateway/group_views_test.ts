/**
 * A model group on an instance that does not hear of changes as they are
 * made (a KV file shared by processes: no watch, views read when asked),
 * while an admin on another instance pauses and resumes its first target.
 */
import assert from "node:assert/strict";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { inProcessGateway } from "../support/in_process.ts";
import { PASSWORD } from "../support/harness.ts";

async function instance(kv: Deno.Kv, clock: FakeClock) {
  const sent: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const fetch = ((input: RequestInfo | URL) => {
    sent.push(new URL(input instanceof Request ? input.url : input).hostname);
    return Promise.resolve(Response.json({ choices: [] }));
  }) as typeof globalThis.fetch;
  const service = (host: string) => ({ target: `http://${host}.test`, rps: 100, burst: 100 });
  const gateway = await inProcessGateway(
    {
      services: { first: service("first"), second: service("second") },
      groups: {
        llama: { targets: [{ service: "first", model: "a" }, { service: "second", model: "b" }] },
      },
    },
    { FIRST_API_KEYS: "k-first", SECOND_API_KEYS: "k-second" },
    { kv, clock, fetch, logs, random: () => 0.5, watchKv: false },
  );
  const call = async (path: string) => {
    const req = new Request(`http://gw${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "any", messages: [] }),
    });
    const res = await settle(clock, gateway.handler(req), 1);
    await res.body?.cancel();
    return { status: res.status, target: res.headers.get("x-kvgate-target") };
  };
  return { gateway, sent, logs, call, chat: () => call("/llama/v1/chat/completions") };
}

Deno.test("groups: a target paused on another instance hands the request on when found paused; resumed there, it is sent to again within about a second", async () => {
  const clock = new FakeClock();
  await using kv = await Deno.openKv(":memory:");
  const one = await instance(kv, clock);
  const two = await instance(kv, clock);
  try {
    assert.deepEqual(await two.chat(), { status: 200, target: "first/a" });
    assert.equal((await one.call("/_kvgate/services/first/pause")).status, 200);
    await clock.advance(1100);
    // two's view of first still says it may go: read before sending, it says paused.
    assert.deepEqual(await two.chat(), { status: 200, target: "second/b" });
    assert.equal(
      two.sent.filter((h) => h === "first.test").length,
      1,
      "nothing more sent to first",
    );
    const line = two.logs.findLast((l) => l.status === 200)!;
    assert.deepEqual(line.skipped, [{ target: "first/a", reason: "service_paused" }]);
    assert.deepEqual(await two.chat(), { status: 200, target: "second/b" }, "skipped from memory");
    assert.equal((await one.call("/_kvgate/services/first/resume")).status, 200);
    await clock.advance(1100);
    await two.chat(); // judged on what two knew, which it has read again meanwhile
    assert.deepEqual(await two.chat(), { status: 200, target: "first/a" });
  } finally {
    await one.gateway.close();
    await two.gateway.close();
  }
});
