import assert from "node:assert/strict";
import { withMemoryKv } from "../support/kv.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import {
  DegradingStore,
  KvCapacityStore,
  ScopeLimiter,
  type ServiceLimits,
  SlotContention,
  type TokenLease,
} from "../../limiter/mod.ts";
import { KvStatus, slotsKey, tokenLedgerKey } from "../../kv/mod.ts";

const limits: ServiceLimits = { rps: 10, burst: 5, maxConn: 4 };

/** Counts the KV commits that failed their check (compare-and-set conflicts). */
function countingConflicts(kv: Deno.Kv): { kv: Deno.Kv; conflicts: () => number } {
  let conflicts = 0;
  const wrapped = new Proxy(kv, {
    get(target, prop) {
      if (prop !== "atomic") return Reflect.get(target, prop, target).bind?.(target);
      return () => {
        const op = target.atomic();
        const commit = op.commit.bind(op);
        op.commit = async () => {
          const r = await commit();
          if (!r.ok) conflicts++;
          return r;
        };
        return op;
      };
    },
  });
  return { kv: wrapped, conflicts: () => conflicts };
}

/** Every token's due time, in ms after `start`. */
function dueTimes(leases: TokenLease[], start: number): number[] {
  return leases.flatMap(({ granted, firstAt = start, spacingMs = 0 }) =>
    Array.from({ length: granted }, (_, k) => Math.max(0, firstAt + k * spacingMs - start))
  ).sort((a, b) => a - b);
}

Deno.test("ledger store: eight instances reserving at once never conflict, and no window gets more than burst + rps·W", async () => {
  const clock = new FakeClock();
  await withMemoryKv(async (base) => {
    const { kv, conflicts } = countingConflicts(base);
    const stores = Array.from(
      { length: 8 },
      (_, i) => new KvCapacityStore(kv, "svc", limits, { instanceId: `i${i}`, clock }),
    );
    const start = clock.now();
    const leases = await Promise.all(
      stores.flatMap((s) => [s.leaseTokens(3), s.leaseTokens(2)]),
    );
    assert.deepEqual(conflicts(), 0);
    assert(leases.every((l) => l.granted > 0), "a ledger grants, for later if need be");
    const due = dueTimes(leases, start);
    assert.deepEqual(due.length, 40);
    for (const w of [0, 100, 500, 1000, 3000]) {
      for (let i = 0; i < due.length; i++) {
        const inWindow = due.filter((t) => t >= due[i] && t <= due[i] + w).length;
        const allowed = limits.burst + limits.rps * (w / 1000);
        assert(inWindow <= allowed + 1e-9, `window ${w} ms at ${due[i]}: ${inWindow} > ${allowed}`);
      }
    }
    // 40 tokens with a burst of 5 at 10 a second: the last falls due 3.5 s on.
    assert.deepEqual(due.at(-1), 3500);
  });
});

Deno.test("compare-and-set store: the same eight instances conflict (the baseline the ledger replaces)", async () => {
  const clock = new FakeClock();
  await withMemoryKv(async (base) => {
    const { kv, conflicts } = countingConflicts(base);
    const stores = Array.from({ length: 8 }, (_, i) =>
      new KvCapacityStore(kv, "svc", limits, {
        instanceId: `i${i}`,
        clock,
        tokens: "compare_and_set",
      }));
    const leases = await Promise.all(stores.map((s) => s.leaseTokens(1)));
    assert(conflicts() > 0, "compare-and-set conflicts under concurrency");
    assert(leases.reduce((n, l) => n + l.granted, 0) <= limits.burst, "but never over-grants");
  });
});

Deno.test("ledger store: returnTokens() hands back the unused tail only while nobody reserved after it", async () => {
  const clock = new FakeClock();
  await withMemoryKv(async (kv) => {
    const a = new KvCapacityStore(kv, "svc", limits, { instanceId: "a", clock });
    const b = new KvCapacityStore(kv, "svc", limits, { instanceId: "b", clock });
    const ledger = async () => (await kv.get<Deno.KvU64>(tokenLedgerKey("svc"))).value!.value;
    await a.leaseTokens(4);
    const afterA = await ledger();
    await a.returnTokens(3);
    assert.deepEqual(afterA - (await ledger()), 3n * 100_000n, "three tokens of 100 ms back");

    await a.leaseTokens(4);
    await b.leaseTokens(1);
    const beforeReturn = await ledger();
    await a.returnTokens(4);
    assert.deepEqual(await ledger(), beforeReturn, "b reserved after a: a's tokens stay spent");
  });
});

Deno.test("limiter.close() hands back unused ledger tokens and idle slots, keeping the slots in use", async () => {
  const clock = new FakeClock();
  await withMemoryKv(async (kv) => {
    const l = { rps: 1, burst: 10, maxConn: 5 };
    const make = (id: string) =>
      new ScopeLimiter(l, {
        store: new KvCapacityStore(kv, "svc", l, { instanceId: id, clock }),
        clock,
      });
    const stopping = make("stopping");
    const deadline = clock.now() + 60_000;
    const slots = await Promise.all([1, 2, 3].map(async () => {
      const slot = stopping.acquireSlot({ deadline });
      await clock.advance(0);
      return await slot;
    }));
    const tokens = [1, 2, 3].map(() => stopping.takeToken({ deadline }));
    await clock.advance(0);
    assert((await Promise.all(tokens)).every((t) => t.ok));
    await clock.advance(0);
    assert(stopping.stats.tokensLeased > 3, "a stock was leased ahead of demand");
    slots[0].ok && slots[0].release();
    await stopping.close();
    const record = await kv.get<{ holders: Record<string, { n: number }> }>(slotsKey("svc"));
    assert.deepEqual(record.value?.holders.stopping?.n, 2, "two slots still in flight stay held");

    // Another instance now gets the whole remaining burst at once: 10 − 3 spent.
    const other = make("other");
    let granted = 0;
    for (let i = 0; i < 7; i++) other.takeToken({ deadline }).then((t) => t.ok && granted++);
    for (let i = 0; i < 4; i++) await clock.advance(0);
    assert.deepEqual(granted, 7, "no time passed: all seven from the burst");

    slots[1].ok && slots[1].release();
    slots[2].ok && slots[2].release();
    await clock.advance(0);
    const after = await kv.get<{ holders: Record<string, { n: number }> }>(slotsKey("svc"));
    assert.deepEqual(
      after.value?.holders.stopping,
      undefined,
      "released after close: handed back at once",
    );
    await other.close();
  });
});

Deno.test("KvCapacityStore.levels(): tokens free and slots held by every instance, as the status shows them, in both token modes", async () => {
  for (const tokens of ["ledger", "compare_and_set"] as const) {
    await withMemoryKv(async (kv) => {
      const clock = new FakeClock();
      const options = { clock, tokens, slotTtlMs: 10_000 };
      const a = new KvCapacityStore(kv, "svc", limits, { ...options, instanceId: "a" });
      const b = new KvCapacityStore(kv, "svc", limits, { ...options, instanceId: "b" });
      assert.deepEqual(await a.levels(), { bucketTokens: 5, inFlight: 0 }, `${tokens}: full`);
      assert.equal((await a.leaseTokens(3)).granted, 3);
      await a.holdSlots(1);
      await b.holdSlots(2);
      assert.deepEqual(await b.levels(), { bucketTokens: 2, inFlight: 3 }, tokens);
      await clock.advance(200); // 10 rps: two tokens back
      assert.equal((await a.levels())?.bucketTokens, 4, `${tokens}: refilled`);
      await clock.advance(10_000);
      assert.equal((await a.levels())?.inFlight, 0, `${tokens}: claims past their TTL`);
    });
  }
});

/** A KV whose compare-and-set commits all fail their check while `conflicting.on` is set: other instances win every turn. */
function losingEveryTurn(kv: Deno.Kv, conflicting: { on: boolean }): Deno.Kv {
  return new Proxy(kv, {
    get(target, prop) {
      if (prop !== "atomic") return Reflect.get(target, prop, target).bind?.(target);
      return () => {
        const op = target.atomic();
        const commit = op.commit.bind(op);
        op.commit = () =>
          conflicting.on ? Promise.resolve({ ok: false } as Deno.KvCommitError) : commit();
        return op;
      };
    },
  });
}

Deno.test("slots under contention: a write that loses every turn renews nothing, so the lease stops admitting when its last written claim runs out", async () => {
  await withMemoryKv(async (base) => {
    const clock = new FakeClock();
    const conflicting = { on: false };
    const kv = losingEveryTurn(base, conflicting);
    const store = new KvCapacityStore(kv, "svc", limits, {
      instanceId: "a",
      clock,
      slotTtlMs: 3000,
      maxConflicts: 3,
    });
    const status = new KvStatus({ clock, probe: () => Promise.resolve() });
    const degrading = new DegradingStore(store, limits, { clock, peers: () => 1, status });
    const limiter = new ScopeLimiter(limits, { store: degrading, clock, slotTtlMs: 3000 });
    const claimedAt = clock.now();
    const slot = await settle(clock, limiter.acquireSlot({ deadline: claimedAt + 1000 }), 0);
    assert.ok(slot.ok, "the first claim is written");
    conflicting.on = true;
    await assert.rejects(store.holdSlots(1), SlotContention);
    await assert.rejects(degrading.holdSlots(1), SlotContention, "passed on: KV answers");
    assert.equal(degrading.degraded, false, "contention is no outage: no local share");
    clock.advanceSync(1000);
    await limiter.heartbeat(); // loses every turn: the claim in KV still ends at claimedAt + 3000
    slot.release();
    clock.advanceSync(2999 - 1000);
    const within = limiter.trySlot();
    assert.ok(within?.ok, "still within the written claim (ttl 3000)");
    within.release();
    clock.advanceSync(1);
    assert.equal(
      limiter.trySlot(),
      undefined,
      "past it: not admitted on a claim KV no longer holds",
    );
    conflicting.on = false;
    await limiter.close();
    status.close();
  });
});
