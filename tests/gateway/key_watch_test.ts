/**
 * The watch on the services' key records: another instance's rest reaches
 * this one when it is written, with no read on a timer; without a live
 * watch the view is polled as before.
 */
import assert from "node:assert/strict";
import { keyId } from "../../keys/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { faultyKv, type KvFaults } from "../support/faulty_kv.ts";
import { chatRequest, fakeUpstream, inProcessGateway, jsonAnswer } from "../support/in_process.ts";

const realTime = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(ok: () => boolean, ms = 2000): Promise<boolean> {
  for (let waited = 0; !ok() && waited < ms; waited += 10) await realTime(10);
  return ok();
}

Deno.test("key watch: a rest written by one instance reaches another while its clock stands still (no poll), and steady requests read no key record", async () => {
  const clock = new FakeClock();
  const faults: KvFaults = { latencyMs: 0, failing: false, ops: 0 };
  const base = await Deno.openKv(":memory:");
  // Which records are read: lists by their first key part, gets by theirs.
  const read: string[] = [];
  const counted = faultyKv(base, faults, clock);
  const kv = new Proxy(counted, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (prop === "list") {
        return (sel: { prefix: Deno.KvKey }, o?: Deno.KvListOptions) => {
          read.push(String(sel.prefix[0]));
          return target.list(sel, o);
        };
      }
      if (prop === "get") {
        return (key: Deno.KvKey, o?: { consistency?: Deno.KvConsistencyLevel }) => {
          read.push(String(key[0]));
          return target.get(key, o);
        };
      }
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  let refuse = false;
  const upstream = fakeUpstream((key) =>
    refuse && key === "sk-a-0123456789"
      ? jsonAnswer(429, {
        error: { message: "slow down", type: "requests", code: "rate_limit_exceeded" },
      })
      : jsonAnswer(200, { choices: [] })
  );
  const settings = { services: { openai: { target: "http://upstream", rps: 1000, burst: 1000 } } };
  const env = { OPENAI_API_KEYS: "sk-a-0123456789,sk-b-0123456789" };
  const one = await inProcessGateway(settings, env, { kv, clock, fetch: upstream.fetch });
  const two = await inProcessGateway(settings, env, { kv, clock, fetch: upstream.fetch });
  const rtTwo = two.runtimes.get("openai")!;
  try {
    assert.ok(await until(() => rtTwo.watched), "the watch is live");
    // Steady requests on a watched view: no KV read on their path, nor for the view.
    await clock.advance(1000);
    for (let i = 0; i < 4; i++) {
      await (await settle(clock, two.handler(chatRequest()))).arrayBuffer();
    }
    read.length = 0;
    for (let i = 0; i < 20; i++) {
      await (await settle(clock, two.handler(chatRequest()), 10)).arrayBuffer();
      await clock.advance(100);
    }
    const viewReads = read.filter((r) =>
      ["key_health", "key_rate", "provider_backoff"].includes(r)
    );
    refuse = true;
    const r = await settle(clock, one.handler(chatRequest()));
    await r.arrayBuffer();
    refuse = false;
    const id = await keyId("sk-a-0123456789");
    assert.ok(one.runtimes.get("openai")!.pool.health(id), "the first instance rests the key");
    const at = clock.now();
    assert.ok(await until(() => rtTwo.pool.health(id) !== undefined), "the second hears of it");
    assert.equal(clock.now(), at, "with no time passing on its clock: no poll did it");
    assert.deepEqual(viewReads, [], "2 s of steady requests read no key record");
  } finally {
    await one.close();
    await two.close();
    base.close();
  }
});
