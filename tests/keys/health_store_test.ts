/** KeyHealthStore on `:memory:` KV: rests shared by every instance, merged, ended by an admin. */
import assert from "node:assert/strict";
import { type KeyHealth, KeyHealthStore } from "../../keys/mod.ts";
import { keyHealthKey, KvUnavailableError } from "../../kv/mod.ts";
import { faultyKv } from "../support/faulty_kv.ts";
import { withMemoryKv } from "../support/kv.ts";

const rest = (until: number, strikes = 1, reason = "rate_limited"): KeyHealth => ({
  state: "cooling",
  until,
  strikes,
  reason,
  setAt: until - 1000,
});

Deno.test("KeyHealthStore.mark() stores a rest that every store on the KV lists, by key id", async () => {
  await withMemoryKv(async (kv) => {
    await new KeyHealthStore(kv).mark("groq", "k_a", rest(61_000), 1_000);
    const seen = await new KeyHealthStore(kv).list("groq");
    assert.deepEqual([...seen.keys()], ["k_a"]);
    assert.equal(seen.get("k_a")?.until, 61_000);
    assert.equal((await new KeyHealthStore(kv).list("openai")).size, 0, "per service");
  });
});

Deno.test("KeyHealthStore.mark(): a shorter rest never cuts a longer one another instance wrote; disabled wins over cooling", async () => {
  await withMemoryKv(async (kv) => {
    const one = new KeyHealthStore(kv);
    const two = new KeyHealthStore(kv);
    await one.mark("groq", "k_a", rest(90_000, 3, "rate_limited"), 1_000);
    const merged = await two.mark("groq", "k_a", rest(20_000, 1, "daily_quota"), 2_000);
    assert.equal(merged.until, 90_000, "the longer rest stands");
    assert.equal(merged.strikes, 3, "the longer streak stands");
    assert.equal(merged.reason, "rate_limited", "with its reason");
    const disabled = await one.mark(
      "groq",
      "k_a",
      { state: "disabled", until: 50_000, strikes: 0, reason: "unauthorized", setAt: 3_000 },
      3_000,
    );
    assert.equal(disabled.state, "disabled");
    assert.equal(disabled.until, 90_000);
  });
});

Deno.test("KeyHealthStore.mark(): a rest that has run out is replaced, not merged", async () => {
  await withMemoryKv(async (kv) => {
    const store = new KeyHealthStore(kv);
    await store.mark("groq", "k_a", rest(10_000, 5, "rate_limited"), 1_000);
    const next = await store.mark("groq", "k_a", rest(40_000, 1, "daily_quota"), 20_000);
    assert.deepEqual(next, rest(40_000, 1, "daily_quota"));
  });
});

Deno.test("KeyHealthStore.enable() writes a rest ended now, decided now; clear() forgets the key", async () => {
  await withMemoryKv(async (kv) => {
    const store = new KeyHealthStore(kv);
    await store.mark("groq", "k_a", rest(90_000), 1_000);
    const enabled = await store.enable("groq", "k_a", 5_000);
    assert.deepEqual(enabled, {
      state: "cooling",
      until: 5_000,
      strikes: 0,
      reason: "enabled_by_admin",
      setAt: 5_000,
    });
    assert.deepEqual((await store.list("groq")).get("k_a"), enabled);
    await store.clear("groq", "k_a");
    assert.equal((await kv.get(keyHealthKey("groq", "k_a"))).value, null);
  });
});

Deno.test("KeyHealthStore: KV failing → mark() and list() throw KvUnavailableError (the pool keeps its memory) and nothing is half-written", async () => {
  await withMemoryKv(async (kv) => {
    const faults = { latencyMs: 0, failing: true, ops: 0 };
    const store = new KeyHealthStore(faultyKv(kv, faults), {
      call: { attempts: 1, timeoutMs: 1000 },
    });
    await assert.rejects(store.mark("groq", "k_a", rest(61_000), 1_000), KvUnavailableError);
    await assert.rejects(store.list("groq"), KvUnavailableError);
    faults.failing = false;
    assert.equal((await store.list("groq")).size, 0, "nothing half-written");
  });
});
