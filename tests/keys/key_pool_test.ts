/** The key pool's rests, shared through KV, against answers that arrive late. */
import assert from "node:assert/strict";
import { KeyHealthStore, KeyPool } from "../../keys/mod.ts";
import { FakeClock, flush } from "../support/fake_clock.ts";
import { faultyKv } from "../support/faulty_kv.ts";
import { withMemoryKv } from "../support/kv.ts";

const keys = [{ id: "k_a", secret: "sk-a" }, { id: "k_b", secret: "sk-b" }];

Deno.test("a success sent before a key's rest was taken does not end the rest, here or in another instance; one sent after it ran out ends it", async () => {
  await withMemoryKv(async (kv) => {
    const store = new KeyHealthStore(kv);
    const here = new KeyPool("openai", keys, { store });
    const there = new KeyPool("openai", keys, { store });
    here.report(keys[0], { kind: "rate_limited", retryAfterMs: 30_000 }, 1_000);
    await here.settled();
    await there.refresh();
    // Answers to requests sent at 900 (before the rest) arrive after it, in both instances.
    here.report(keys[0], { kind: "success" }, 1_100, undefined, 900);
    there.report(keys[0], { kind: "success" }, 1_150, undefined, 950);
    await here.settled();
    await there.settled();
    await there.refresh();
    assert.equal(there.health("k_a")?.until, 31_000, "the rest stands everywhere");
    assert.equal(here.health("k_a")?.until, 31_000);
    // Nor one sent after it by an instance that had not yet seen it.
    there.report(keys[0], { kind: "success" }, 1_400, undefined, 1_200);
    await there.settled();
    await here.refresh();
    assert.equal(here.health("k_a")?.until, 31_000);
    // One sent once the rest has run out ends the record (its 429 streak).
    here.report(keys[0], { kind: "success" }, 31_300, undefined, 31_100);
    await here.settled();
    assert.equal(here.health("k_a"), undefined);
    assert.equal((await store.list("openai")).has("k_a"), false, "and its record is gone");
  });
});

Deno.test("a request waiting while every key rests is woken when an admin enables one, or a success ends a rest", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const pool = new KeyPool("openai", keys, { store: new KeyHealthStore(kv), clock });
    const now = clock.now();
    for (const k of keys) pool.report(k, { kind: "rate_limited", retryAfterMs: 30_000 }, now);
    const pick = pool.pick(now);
    assert.deepEqual(pick, { ok: false, untilMs: now + 30_000 });
    const waiting = pool.waitForReturn(pick.ok ? 0 : pick.untilMs);
    let woken = false;
    waiting.then(() => woken = true);
    await clock.advance(1000);
    assert.equal(woken, false, "the rests stand");
    assert.equal(await pool.enable("k_b", clock.now()), true);
    await flush();
    assert.equal(woken, true, "woken at the enable, 29 s early");
    assert.deepEqual(pool.pick(clock.now()), { ok: true, key: keys[1] });
    const next = pool.waitForReturn(now + 30_000);
    await clock.advance(30_000);
    pool.report(keys[0], { kind: "success" }, clock.now(), undefined, clock.now());
    assert.equal(await next, true);
    await pool.settled();
  });
});

Deno.test("a suspect key's probe that finds it good ends its rest on the instances that had read the rest, at their next read", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const store = new KeyHealthStore(kv);
    let answer: (verdict: { kind: "success" }) => void = () => {};
    const probe = () => new Promise<{ kind: "success" }>((r) => answer = r);
    const here = new KeyPool("openai", keys, { store, clock, probe, checkMs: 30_000 });
    const there = new KeyPool("openai", keys, { store, clock });
    here.report(keys[0], { kind: "key_suspect", reason: "unauthorized" }, clock.now());
    await flush();
    await there.refresh();
    assert.equal(
      there.health("k_a")?.reason,
      "checking",
      "there reads the rest while the probe runs",
    );
    answer({ kind: "success" });
    await here.settled();
    assert.equal(here.health("k_a"), undefined, "the probe ends it here");
    await there.refresh();
    assert.equal(there.health("k_a"), undefined, "and there, 30 s before the rest would end");
    assert.deepEqual(there.pick(clock.now()), { ok: true, key: keys[0] });
  });
});

Deno.test("a rest this instance could not write (KV down) is kept at a read that does not find it", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const faults = { latencyMs: 0, failing: true, ops: 0 };
    const store = new KeyHealthStore(faultyKv(kv, faults), { call: { attempts: 1 } });
    const pool = new KeyPool("openai", keys, { store, clock });
    pool.report(keys[0], { kind: "rate_limited", retryAfterMs: 30_000 }, clock.now());
    await pool.settled(); // the write failed
    faults.failing = false; // KV answers reads again; the rest is not written yet
    await pool.refresh();
    assert.equal((await store.list("openai")).has("k_a"), false, "KV has not heard of it");
    assert.equal(pool.health("k_a")?.until, clock.now() + 30_000, "kept");
  });
});
