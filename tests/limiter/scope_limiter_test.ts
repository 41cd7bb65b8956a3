import assert from "node:assert/strict";
import { withMemoryKv } from "../support/kv.ts";
import { FakeClock, flush } from "../support/fake_clock.ts";
import {
  type CapacityStore,
  KvCapacityStore,
  MemoryCapacityStore,
  ScopeLimiter,
  type ScopeLimiterOptions,
  type ServiceLimits,
} from "../../limiter/mod.ts";
import { slotsKey } from "../../kv/mod.ts";

const limits = { rps: 4, burst: 8, maxConn: 100 };

/** Takes a token, letting the fake clock run the zero-delay timers the KV lease waits on. */
async function take(limiter: ScopeLimiter, clock: FakeClock) {
  const p = limiter.takeToken({ deadline: clock.now() + 60_000 });
  await clock.advance(0);
  return await p;
}

function memoryLimiter(clock: FakeClock, l = limits, queueLimit = 200) {
  return new ScopeLimiter(l, { store: new MemoryCapacityStore(l, clock), clock, queueLimit });
}

Deno.test("limiter.takeToken() lets a burst through at once, then paces at rps", async () => {
  const clock = new FakeClock();
  const limiter = memoryLimiter(clock);
  const granted: number[] = [];
  const start = clock.now();
  for (let i = 0; i < 20; i++) {
    limiter.takeToken({ deadline: start + 60_000 }).then((a) =>
      a.ok && granted.push(clock.now() - start)
    );
  }
  await clock.advance(0);
  assert.deepEqual(granted.length, 8, "the burst");
  await clock.advance(1000);
  assert.deepEqual(granted.length, 12, "4 more in the next second");
  await clock.advance(2000);
  assert.deepEqual(granted.length, 20);
  assert.deepEqual(granted.slice(8), [
    250,
    500,
    750,
    1000,
    1250,
    1500,
    1750,
    2000,
    2250,
    2500,
    2750,
    3000,
  ]);
});

Deno.test("limiter.takeToken() is first in, first out", async () => {
  const clock = new FakeClock();
  const limiter = memoryLimiter(clock, { rps: 1, burst: 1, maxConn: 10 });
  const order: number[] = [];
  for (let i = 0; i < 5; i++) {
    limiter.takeToken({ deadline: clock.now() + 60_000 }).then(() => order.push(i));
  }
  await clock.advance(5000);
  assert.deepEqual(order, [0, 1, 2, 3, 4]);
});

Deno.test("limiter.acquireSlot() caps in-flight at maxConn and hands a freed slot to the oldest waiter", async () => {
  const clock = new FakeClock();
  const limiter = memoryLimiter(clock, { rps: 100, burst: 100, maxConn: 2 });
  const deadline = clock.now() + 60_000;
  const a = await limiter.acquireSlot({ deadline });
  const b = await limiter.acquireSlot({ deadline });
  let third = false;
  const c = limiter.acquireSlot({ deadline }).then((s) => (third = true, s));
  await clock.advance(100);
  assert.deepEqual(third, false);
  assert.deepEqual(limiter.inFlight, 2);
  assert(a.ok && b.ok);
  a.release();
  a.release(); // idempotent
  await flush();
  assert.deepEqual(third, true);
  assert.deepEqual(limiter.inFlight, 2);
  const s = await c;
  assert(s.ok);
  s.release();
  b.release();
  assert.deepEqual(limiter.inFlight, 0);
});

Deno.test("limiter.trySlot() and tryToken() answer at once, and never jump a queue", async () => {
  const clock = new FakeClock();
  const l = { rps: 1, burst: 2, maxConn: 2 };
  const limiter = memoryLimiter(clock, l);
  const a = limiter.trySlot();
  const b = limiter.trySlot(clock.now());
  assert(a?.ok && b?.ok, "two free slots, taken without a promise");
  assert.deepEqual(limiter.trySlot(), undefined, "maxConn reached: the caller must wait");
  const waiting = limiter.acquireSlot({ deadline: clock.now() + 60_000 });
  a.release();
  assert.deepEqual(limiter.trySlot(), undefined, "the freed slot went to the waiter, not past it");
  assert((await waiting).ok);
  assert.deepEqual(limiter.inFlight, 2);

  assert(limiter.tryToken() && limiter.tryToken(clock.now()), "the burst, at once");
  assert(!limiter.tryToken(), "empty: the next token is 1 s away");
  const queued = limiter.takeToken({ deadline: clock.now() + 60_000 });
  await clock.advance(1000);
  assert((await queued).ok);
  await clock.advance(1000);
  assert(limiter.tryToken(), "refilled, nobody waiting");
  assert(!limiter.tryToken());
});

Deno.test("limiter refuses past queueLimit and past the deadline, with a Retry-After", async () => {
  const clock = new FakeClock();
  const limiter = memoryLimiter(clock, { rps: 1, burst: 1, maxConn: 1 }, 1);
  const deadline = clock.now() + 1000;
  const held = await limiter.acquireSlot({ deadline });
  assert(held.ok);
  const queued = limiter.acquireSlot({ deadline });
  const full = await limiter.acquireSlot({ deadline });
  assert.deepEqual(full.ok, false);
  assert(!full.ok && full.reason === "queue_full" && full.retryAfterMs >= 1000);
  await clock.advance(1000);
  const timedOut = await queued;
  assert(!timedOut.ok && timedOut.reason === "queue_timeout");
  assert.deepEqual(limiter.waiting, 0);
});

Deno.test("limiter: an aborted waiter leaves the queue at once", async () => {
  const clock = new FakeClock();
  const limiter = memoryLimiter(clock, { rps: 1, burst: 1, maxConn: 1 });
  await limiter.takeToken({ deadline: clock.now() + 60_000 });
  const ac = new AbortController();
  const waiting = limiter.takeToken({ deadline: clock.now() + 60_000, signal: ac.signal });
  assert.deepEqual(limiter.waiting, 1);
  ac.abort();
  const r = await waiting;
  assert(!r.ok && r.reason === "aborted");
  assert.deepEqual(limiter.waiting, 0);
  assert.deepEqual(clock.pending <= 1, true, "its deadline timer is gone");
});

Deno.test("limiter (KV store): requests arriving together cost one KV lease, and leased tokens cost none", async () => {
  const clock = new FakeClock();
  await withMemoryKv(async (kv) => {
    const l = { rps: 50, burst: 50, maxConn: 100 };
    const inner = new KvCapacityStore(kv, "svc", l, { instanceId: "i1", clock });
    const asked: number[] = [];
    const store: CapacityStore = {
      shared: true,
      leaseTokens: (want) => {
        asked.push(want);
        return inner.leaseTokens(want);
      },
      returnTokens: (n) => inner.returnTokens(n),
      holdSlots: (n) => inner.holdSlots(n),
    };
    const limiter = new ScopeLimiter(l, { store, clock });
    const all = Array.from(
      { length: 10 },
      () => limiter.takeToken({ deadline: clock.now() + 60_000 }),
    );
    await clock.advance(0);
    const results = await Promise.all(all);
    assert(results.every((r) => r.ok));
    assert.deepEqual(asked[0], 10, "the first lease asked for the whole burst at once");
    // Any further lease refills ahead of demand; the next three requests find tokens waiting.
    for (let i = 0; i < 3; i++) {
      await clock.advance(20);
      const before = asked.length;
      const p = limiter.takeToken({ deadline: clock.now() + 60_000 });
      assert(limiter.stats.tokensSpent === 11 + i, "served from the stock, before any await");
      assert((await p).ok);
      assert(asked.length <= before + 1);
    }
    assert(asked.length <= 2, `leases: ${asked}`);
    await limiter.close();
  });
});

interface KvLimiterTest {
  clock: FakeClock;
  kv: Deno.Kv;
  limiter: ScopeLimiter;
}

/** Runs `fn` with a limiter on a fresh in-memory KV store and a fake clock; closes both after. */
async function withKvLimiter(
  l: ServiceLimits,
  fn: (t: KvLimiterTest) => Promise<void>,
  options: Partial<ScopeLimiterOptions> = {},
): Promise<void> {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const limiter = new ScopeLimiter(l, {
      store: new KvCapacityStore(kv, "svc", l, { instanceId: "i1", clock }),
      clock,
      ...options,
    });
    try {
      await fn({ clock, kv, limiter });
    } finally {
      await limiter.close();
    }
  });
}

/** `n` requests one after another, each holding its slot for `holdMs`. */
async function oneAtATime(t: KvLimiterTest, n: number, holdMs: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const p = t.limiter.acquireSlot({ deadline: t.clock.now() + 60_000 });
    await t.clock.advance(0);
    const slot = await p;
    await t.clock.advance(holdMs);
    if (slot.ok) slot.release();
  }
}

Deno.test("limiter (KV store): leased tokens expire after leaseMs and are counted as stranded", async () => {
  await withKvLimiter({ rps: 100, burst: 100, maxConn: 100 }, async ({ clock, limiter }) => {
    for (let i = 0; i < 20; i++) {
      await take(limiter, clock);
      await clock.advance(10);
    }
    const leased = limiter.stats.tokensLeased;
    assert(leased > limiter.stats.tokensSpent, "a stock was leased ahead");
    await clock.advance(3000);
    await take(limiter, clock);
    assert.deepEqual(limiter.stats.tokensStranded, leased - 20);
  }, { leaseMs: 2000 });
});

/** A limiter on a shared store whose token leases `leaseTokens` decides; slots are always granted. */
function limiterOnLeases(
  clock: FakeClock,
  limits: ServiceLimits,
  leaseMs: number,
  leaseTokens: CapacityStore["leaseTokens"],
): ScopeLimiter {
  const store: CapacityStore = {
    shared: true,
    leaseTokens,
    returnTokens: () => Promise.resolve(),
    holdSlots: (n) => Promise.resolve(n),
  };
  return new ScopeLimiter(limits, { store, clock, leaseMs });
}

Deno.test("limiter: leased tokens falling due in turn expire in turn, leaseMs after each is due", async () => {
  const clock = new FakeClock();
  const start = clock.now();
  // Leases 10 tokens once, one due every 100 ms from now.
  let leases = 0;
  const limiter = limiterOnLeases(
    clock,
    { rps: 10, burst: 10, maxConn: 10 },
    500,
    () =>
      Promise.resolve(
        leases++ === 0
          ? { granted: 10, retryAfterMs: 0, firstAt: start, spacingMs: 100 }
          : { granted: 0, retryAfterMs: 60_000 },
      ),
  );
  try {
    assert((await take(limiter, clock)).ok, "token 0, due at once");
    assert.deepEqual(limiter.stats.tokensLeased, 10);
    await clock.advance(749);
    // Tokens 1–2 (due at 100 and 200) expired at 600 and 700; token 3 is spent.
    assert(limiter.tryToken());
    assert.deepEqual([limiter.stats.tokensStranded, limiter.stats.tokensSpent], [2, 2]);
    await clock.advance(1000 - 749);
    // Tokens 4–5 (due at 400 and 500) expired by 1000; token 6 is spent.
    assert(limiter.tryToken());
    assert.deepEqual([limiter.stats.tokensStranded, limiter.stats.tokensSpent], [4, 3]);
    await clock.advance(10_000);
    assert(!limiter.tryToken(), "the rest expired");
    assert.deepEqual(limiter.stats.tokensStranded, 7);
  } finally {
    await limiter.close();
  }
});

Deno.test("limiter (KV store): a stock about to expire is refilled ahead, so the request after it does not wait", async () => {
  const clock = new FakeClock();
  const leasedAt: number[] = [];
  // Grants what is asked, all due at once, after a 20 ms round trip.
  const limiter = limiterOnLeases(
    clock,
    { rps: 1000, burst: 1000, maxConn: 10 },
    2000,
    async (want) => {
      leasedAt.push(clock.now());
      await new Promise<void>((r) => clock.setTimeout(r, 20));
      return { granted: want, retryAfterMs: 0, firstAt: clock.now(), spacingMs: 0 };
    },
  );
  try {
    /** Spends a token, waiting for one if none is valid now; true if it had to wait. */
    const spend = async () => {
      if (limiter.tryToken()) return false;
      const p = limiter.takeToken({ deadline: clock.now() + 60_000 });
      await clock.advance(25);
      assert((await p).ok);
      return true;
    };
    // A busy second: 400 requests. Leases follow demand, so the stock grows
    // well beyond what a quiet spell needs.
    for (let i = 0; i < 400; i++) {
      await spend();
      await clock.advance(2.5);
    }
    // Then a quiet spell, one request every 100 ms, for longer than the lease lifetime.
    let waited = 0;
    for (let i = 0; i < 40; i++) {
      if (await spend()) waited++;
      await clock.advance(100);
    }
    assert.deepEqual(waited, 0, `requests that found no valid token (leases at ${leasedAt})`);
    assert.deepEqual(limiter.stats.tokensSpent, 440);
  } finally {
    await limiter.close();
  }
});

const ROOMY = { rps: 1000, burst: 1000, maxConn: 100 };

Deno.test("limiter (KV store): an idle slot's hand-back timer never delays asking for more slots", async () => {
  await withKvLimiter(ROOMY, async (t) => {
    await oneAtATime(t, 1, 0); // the idle slot now lingers, its hand-back timer pending
    let granted = 0;
    const deadline = t.clock.now() + 60_000;
    for (let i = 0; i < 5; i++) t.limiter.acquireSlot({ deadline }).then((s) => s.ok && granted++);
    for (let i = 0; i < 4; i++) await t.clock.advance(0);
    assert.deepEqual(granted, 5, "all five at once, without waiting for the linger to end");
  });
});

Deno.test("limiter (KV store): slots beyond the recent peak go back after 1 s; slots in steady use stay without writes", async () => {
  await withKvLimiter(ROOMY, async (t) => {
    const held = async () =>
      (await t.kv.get<{ holders: Record<string, { n: number }> }>(slotsKey("svc"))).value
        ?.holders.i1?.n ?? 0;
    const burst = Array.from(
      { length: 5 },
      () => t.limiter.acquireSlot({ deadline: t.clock.now() + 60_000 }),
    );
    await t.clock.advance(0);
    const slots = await Promise.all(burst);
    assert.deepEqual(await held(), 5);
    for (const s of slots) if (s.ok) s.release();
    await oneAtATime(t, 30, 100); // steady traffic for 3 s
    assert.deepEqual(await held(), 1, "the four idle slots went back; the one in use stayed");
    const writes = t.limiter.stats.slotWrites;
    await oneAtATime(t, 30, 100);
    assert.deepEqual(t.limiter.stats.slotWrites, writes, "steady use costs no slot writes");
  });
});
