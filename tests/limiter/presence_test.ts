/** Presence on `:memory:` KV and the fake clock: how many instances are live. */
import assert from "node:assert/strict";
import { Presence } from "../../limiter/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { faultyKv } from "../support/faulty_kv.ts";
import { withMemoryKv } from "../support/kv.ts";

Deno.test("Presence: peers is undefined until a beat reaches KV, then counts every live instance", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const a = new Presence(kv, "a", { clock, intervalMs: 1000 });
    const b = new Presence(kv, "b", { clock, intervalMs: 1000, region: "eu" });
    assert.equal(a.peers, undefined);
    await a.beat();
    assert.equal(a.peers, 1);
    await b.beat();
    await a.beat();
    assert.equal(a.peers, 2);
    const listed = await a.list(5000);
    assert.deepEqual(listed.map((r) => [r.id, r.region]).sort(), [["a", undefined], ["b", "eu"]]);
  });
});

Deno.test("Presence: an instance that stops beating stops counting after three periods; leave() removes it at once", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const a = new Presence(kv, "a", { clock, intervalMs: 1000 });
    const b = new Presence(kv, "b", { clock, intervalMs: 1000 });
    const c = new Presence(kv, "c", { clock, intervalMs: 1000 });
    await b.beat();
    await c.beat();
    clock.advanceSync(2999);
    await a.beat();
    assert.equal(a.peers, 3, "still live just inside three periods");
    clock.advanceSync(1);
    await a.beat();
    assert.equal(a.peers, 1, "b and c silent for three periods");
    await b.beat();
    await b.leave();
    await a.beat();
    assert.equal(a.peers, 1);
  });
});

Deno.test("Presence: through a KV outage the last count is kept (degraded shares divide by it)", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const faults = { latencyMs: 0, failing: false, ops: 0 };
    const flaky = faultyKv(kv, faults);
    const a = new Presence(flaky, "a", { clock, call: { attempts: 1 } });
    await new Presence(kv, "b", { clock }).beat();
    await a.beat();
    assert.equal(a.peers, 2);
    faults.failing = true;
    await assert.rejects(a.beat());
    assert.equal(a.peers, 2);
  });
});

Deno.test("Presence: its port is set, delete and list — handed only those, it beats, counts and leaves", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const port = {
      set: kv.set.bind(kv),
      delete: kv.delete.bind(kv),
      list: kv.list.bind(kv),
    };
    const a = new Presence(port, "a", { clock, intervalMs: 1000 });
    await a.beat();
    assert.equal(a.peers, 1);
    await a.leave();
    assert.deepEqual(await a.list(5000), []);
  });
});

Deno.test("Presence: leave() while a beat is still on its way removes the record after it lands, and a beat after leave() writes none", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const faults = { latencyMs: 100, failing: false, ops: 0 };
    const slow = faultyKv(kv, faults, clock);
    const a = new Presence(kv, "a", { clock, intervalMs: 1000 });
    const b = new Presence(slow, "b", { clock, intervalMs: 1000 });
    const beating = b.beat(); // its write lands 100 ms from now
    faults.latencyMs = 10; // a delete sent now would land first
    const leaving = b.leave();
    await settle(clock, Promise.all([beating, leaving]), 10);
    await a.beat();
    assert.equal(a.peers, 1, "b's record is gone: its beat did not land after the delete");
    await b.beat(); // KV came back, say, and the rejoin beats
    await a.beat();
    assert.equal(a.peers, 1, "an instance that has left writes no record again");
  });
});
