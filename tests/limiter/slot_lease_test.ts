import assert from "node:assert/strict";
import type { CapacityStore } from "../../limiter/mod.ts";
import { SlotLease } from "../../limiter/slot_lease.ts";
import type { Waiters } from "../../limiter/capacity_store.ts";
import { FakeClock } from "../support/fake_clock.ts";

/** A shared store whose slot writes the test controls. */
function sharedStore(clock: FakeClock) {
  const store = {
    shared: true,
    failing: false,
    writes: [] as number[],
    leaseTokens: () => Promise.resolve({ granted: 0, retryAfterMs: 1000 }),
    returnTokens: () => Promise.resolve(),
    holdSlots(target: number) {
      store.writes.push(target);
      return store.failing ? Promise.reject(new Error("KV down")) : Promise.resolve(target);
    },
  };
  const waiting: number[] = [];
  const lease = newLease(store, clock, 4, {
    waiting: () => waiting.length,
    grant: () => void waiting.shift(),
  });
  return { store, lease, waiting };
}

/** A lease of `maxConn` slots with a ttl of 3 s. */
function newLease(
  store: CapacityStore,
  clock: FakeClock,
  maxConn: number,
  waiters: Waiters = { waiting: () => 0, grant: () => {} },
): SlotLease {
  return new SlotLease({
    store,
    clock,
    maxConn,
    ttlMs: 3000,
    peers: () => 1,
    random: () => 0.5,
    stats: { slotWrites: 0 },
    waiters,
  });
}

Deno.test("SlotLease: a claim that cannot be renewed stops admitting once it runs out (the fence)", async () => {
  const clock = new FakeClock();
  const { store, lease, waiting } = sharedStore(clock);
  const claimedAt = clock.now();
  waiting.push(1);
  lease.pump();
  await clock.advance(10);
  assert.deepEqual(store.writes, [1], "one write claims the slot the waiter needs");
  assert.equal(waiting.length, 0, "and the waiter got it");
  const release = lease.releaser();
  release();
  assert(lease.free(clock.now()), "the slot stays held for the next request");
  store.failing = true;
  await lease.heartbeat();
  assert(lease.free(claimedAt + 2999), "still ours until the claim's end (ttl 3000)");
  assert(!lease.free(claimedAt + 3000), "not past it: other instances may count it as free");
  lease.close();
});

Deno.test("SlotLease: an instance's own store holds every slot from the start, with no write", () => {
  const clock = new FakeClock();
  const store = {
    shared: false,
    leaseTokens: () => Promise.resolve({ granted: 0, retryAfterMs: 0 }),
    returnTokens: () => Promise.resolve(),
    holdSlots: (n: number) => Promise.resolve(n),
  };
  const lease = newLease(store, clock, 2);
  const a = lease.take();
  lease.take();
  assert(!lease.free(clock.now()), "maxConn 2: both in use");
  a();
  a();
  assert.equal(lease.inUse, 1, "a release counts once");
  assert(lease.free(clock.now()));
});

/**
 * A shared store like KV's: one claim for this instance, set by each write
 * when it lands. Writes land when the test says, in the order it says.
 */
function landingStore() {
  const inFlight: { target: number; land: () => void }[] = [];
  const store = {
    shared: true,
    claim: 0,
    writes: [] as number[],
    leaseTokens: () => Promise.resolve({ granted: 0, retryAfterMs: 1000 }),
    returnTokens: () => Promise.resolve(),
    holdSlots(target: number): Promise<number> {
      store.writes.push(target);
      const { promise, resolve } = Promise.withResolvers<number>();
      inFlight.push({
        target,
        land: () => {
          store.claim = target;
          resolve(target);
        },
      });
      return promise;
    },
    /** Lands the write asked for with `target` (the oldest such), and lets its callbacks run. */
    async land(target: number) {
      const i = inFlight.findIndex((w) => w.target === target);
      assert(
        i >= 0,
        `a write of ${target} is in flight (in flight: ${inFlight.map((w) => w.target)})`,
      );
      inFlight.splice(i, 1)[0].land();
      for (let n = 0; n < 5; n++) await Promise.resolve();
    },
    inFlight: () => inFlight.map((w) => w.target),
  };
  return store;
}

/** A lease over `store` with one slot in use, claimed and landed. */
async function oneSlotInUse(store: ReturnType<typeof landingStore>, clock: FakeClock) {
  const waiting: number[] = [];
  const lease = newLease(store, clock, 4, {
    waiting: () => waiting.length,
    grant: () => void waiting.shift(),
  });
  waiting.push(1);
  lease.pump();
  await clock.advance(1);
  await store.land(1);
  assert.equal(lease.inUse, 1);
  return { lease, waiting };
}

Deno.test("SlotLease: a heartbeat never lands over a larger claim made while it was out (the claim covers every slot in use)", async () => {
  const clock = new FakeClock();
  const store = landingStore();
  const { lease, waiting } = await oneSlotInUse(store, clock);
  // A second request needs a slot: a write asks for 2.
  waiting.push(2);
  lease.pump();
  await clock.advance(1);
  assert.deepEqual(store.inFlight(), [2]);
  // The heartbeat comes while that write is out; had it written its own
  // count (1) and landed last, KV would show 1 slot of this instance's while
  // 2 are in use, and other instances would take the other.
  const beat = lease.heartbeat();
  await store.land(2);
  for (const target of store.inFlight()) await store.land(target);
  await beat;
  assert.equal(lease.inUse, 2, "the waiter got its slot");
  assert(store.claim >= lease.inUse, `KV's claim ${store.claim} covers the ${lease.inUse} in use`);
  assert(lease.held <= store.claim, `held ${lease.held} never above the claim ${store.claim}`);
  lease.close();
});

Deno.test("SlotLease: a request that needs a slot while a heartbeat is out asks once it has landed", async () => {
  const clock = new FakeClock();
  const store = landingStore();
  const { lease, waiting } = await oneSlotInUse(store, clock);
  const beat = lease.heartbeat();
  assert.deepEqual(store.inFlight(), [1], "the heartbeat renews the one slot");
  waiting.push(2);
  lease.pump();
  await clock.advance(1);
  assert.deepEqual(store.inFlight(), [1], "no second write races the heartbeat");
  await store.land(1);
  await beat;
  await clock.advance(1);
  assert.deepEqual(store.inFlight(), [2], "then one asks for both slots");
  await store.land(2);
  assert.equal(waiting.length, 0, "and the waiter gets its slot");
  assert.equal(lease.inUse, 2);
  assert.equal(store.claim, 2);
  lease.close();
});

Deno.test("SlotLease: closing while a heartbeat is out writes the hand-back after it, so the hand-back is what KV keeps", async () => {
  const clock = new FakeClock();
  const store = landingStore();
  const { lease } = await oneSlotInUse(store, clock);
  const beat = lease.heartbeat();
  const release = lease.releaser();
  release(); // the slot's request ends: the slot lingers, held
  const closing = lease.close();
  for (let n = 0; n < 5; n++) await Promise.resolve();
  assert.deepEqual(store.inFlight(), [1], "the hand-back waits for the heartbeat's write");
  await store.land(1);
  await beat;
  assert.deepEqual(store.inFlight(), [0], "then hands every slot back");
  await store.land(0);
  await closing;
  await lease.settled();
  assert.equal(store.claim, 0, "KV keeps the hand-back, not the heartbeat's renewal");
});
