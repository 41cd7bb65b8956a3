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
