/**
 * DayBudgets on `:memory:` KV and the fake clock: a day's requests and
 * tokens shared by every instance, reserved in chunks, handed back when
 * idle, kept through a KV outage.
 */
import assert from "node:assert/strict";
import { type Budgeted, DayBudgets } from "../../limiter/mod.ts";
import { keyDayUsageKey, teamUsageKey as usageKey } from "../../kv/mod.ts";
import { FakeClock, passes } from "../support/fake_clock.ts";
import { faultyKv } from "../support/faulty_kv.ts";
import { withMemoryKv } from "../support/kv.ts";

const team = (daily: Budgeted["daily"]): Budgeted => ({ name: "acme", daily });
const DAY = 86_400_000;

/** Spends once, awaiting a reservation when one is needed. */
async function spend(b: DayBudgets, t: Budgeted, clock: FakeClock) {
  return await b.spend(t, clock.now());
}

Deno.test("DayBudgets: two instances spend exactly the day's requests between them, then both refuse: for a few seconds while a peer may still hand some back, then until the day resets", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const peers = () => 2;
    const a = new DayBudgets({ kv, clock, usageKey, peers });
    const b = new DayBudgets({ kv, clock, usageKey, peers });
    const t = team({ requests: 30 });
    let granted = 0;
    for (let i = 0; i < 100; i++) {
      if ((await spend(i % 2 ? b : a, t, clock)).ok) granted++;
    }
    assert.equal(granted, 30);
    // Just seen spent, the day is looked at again once a peer's idle reservation would be back.
    const first = await spend(b, t, clock);
    assert.equal(first.ok, false);
    assert.ok(!first.ok && first.retryAfterMs <= 2000 + 2 * 1000, `${JSON.stringify(first)}`);
    await clock.advance(4000);
    const refused = await spend(b, t, clock);
    const midnight = Math.ceil(clock.now() / DAY) * DAY;
    assert.deepEqual(refused, {
      ok: false,
      retryAfterMs: midnight - clock.now(),
      resetsAt: midnight,
    });
    // a's view is 4 s old: check() leaves it to spend(), which reads the day again.
    assert.deepEqual(a.check(t, clock.now()), { ok: true }, "a stale view is no refusal");
    assert.deepEqual(await spend(a, t, clock), refused, "a reads it and says the same");
    assert.deepEqual(a.check(t, clock.now()), refused, "check() says the same from memory");
    await a.close();
    await b.close();
  });
});

Deno.test("DayBudgets: a day that fills again once room came back is looked at again within seconds too, not refused until the reset while a peer still holds some", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const peers = () => 2;
    const [a, b, c] = [0, 1, 2].map(() => new DayBudgets({ kv, clock, usageKey, peers }));
    const t = team({ requests: 200 });
    const drain = async () => {
      let served = 0;
      for (;;) {
        const v = await spend(b, t, clock);
        if (!v.ok) return { served, v };
        served++;
      }
    };
    assert.ok(
      (await spend(a, t, clock)).ok,
      "a reserves a chunk, spends one, leaves the rest idle",
    );
    const first = await drain();
    assert.ok(!first.v.ok && first.v.retryAfterMs <= 4000, JSON.stringify(first.v));
    await passes(clock, 6000);
    assert.ok((await spend(c, t, clock)).ok, "a's idle part went back; c reserves some of it");
    const second = await drain();
    assert.ok(
      !second.v.ok && second.v.retryAfterMs <= 4000,
      `c still holds some: ${JSON.stringify(second.v)}`,
    );
    await passes(clock, 6000);
    const third = await drain();
    assert.equal(
      1 + first.served + 1 + second.served + third.served,
      200,
      "every request of the day",
    );
    await passes(clock, 5000);
    const midnight = Math.ceil(clock.now() / DAY) * DAY;
    assert.deepEqual(await spend(b, t, clock), {
      ok: false,
      retryAfterMs: midnight - clock.now(),
      resetsAt: midnight,
    });
    for (const x of [a, b, c]) await x.close();
  });
});

/** How a reservation is left idle: with a flush asked for, or only time passing (no answer's tokens to wake one). */
const idleWays = [
  {
    name: "a reservation idle for 2 s goes back at the next flush",
    timer: true,
    wait: async (a: DayBudgets, clock: FakeClock) => {
      await clock.advance(2000);
      await a.flush();
    },
  },
  ...[true, false].map((timer) => ({
    name: `${timer ? "" : "(timer: false) "}a reservation left idle goes back by itself`,
    timer,
    wait: async (_a: DayBudgets, clock: FakeClock) => {
      for (let s = 0; s < 4; s++) await clock.advance(1000);
    },
  })),
];

for (const way of idleWays) {
  Deno.test(`DayBudgets: ${way.name}, and the other instance spends it`, async () => {
    await withMemoryKv(async (kv) => {
      const clock = new FakeClock();
      const a = new DayBudgets({ kv, clock, usageKey, timer: way.timer });
      const b = new DayBudgets({ kv, clock, usageKey });
      const t = team({ requests: 40 });
      assert.ok((await spend(a, t, clock)).ok, "a reserves a chunk and spends one of it");
      let granted = 0;
      while ((await spend(b, t, clock)).ok) granted++;
      assert.ok(granted < 39, `b cannot spend what a holds (${granted})`);
      await way.wait(a, clock);
      while ((await spend(b, t, clock)).ok) granted++;
      assert.equal(granted, 39, "every request of the day but a's one");
      assert.equal((await b.usage("acme")).requests, 40);
      await a.close();
      await b.close();
    });
  });
}

Deno.test("DayBudgets: a new budget day starts from zero, at dayStartMs", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const dayStartMs = 8 * 3_600_000;
    const budgets = new DayBudgets({ kv, clock, usageKey, dayStartMs });
    const t = team({ requests: 2 });
    assert.ok((await spend(budgets, t, clock)).ok);
    assert.ok((await spend(budgets, t, clock)).ok);
    const refused = await spend(budgets, t, clock);
    assert.equal(refused.ok, false);
    const resetsAt = (refused as { resetsAt: number }).resetsAt;
    assert.equal((resetsAt - dayStartMs) % DAY, 0, "the day turns at 08:00 UTC");
    await clock.advance(resetsAt - clock.now());
    assert.ok((await spend(budgets, t, clock)).ok, "the new day's first request");
    await budgets.close();
  });
});

Deno.test("DayBudgets: a tokens budget refuses once the day's tokens reach it — here at once, elsewhere after a flush", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const a = new DayBudgets({ kv, clock, usageKey });
    const b = new DayBudgets({ kv, clock, usageKey });
    const t = team({ tokens: 100 });
    assert.ok((await spend(a, t, clock)).ok);
    a.addTokens("acme", 120);
    assert.equal(a.check(t, clock.now()).ok, false, "here, from memory");
    await a.flush();
    assert.equal((await spend(b, t, clock)).ok, false, "there, from KV");
    assert.equal((await b.usage("acme")).tokens, 120);
    await a.close();
    await b.close();
  });
});

Deno.test("DayBudgets: KV down → an instance spends only its share of what was left, and its counts reach KV when KV answers", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const faults = { latencyMs: 0, failing: true, ops: 0 };
    const down = new DayBudgets({
      kv: faultyKv(kv, faults),
      clock,
      usageKey,
      peers: () => 2,
      call: { attempts: 1 },
    });
    const t = team({ requests: 10 });
    let granted = 0;
    for (let i = 0; i < 20; i++) if ((await spend(down, t, clock)).ok) granted++;
    assert.equal(granted, 5, "half of the 10 left, for 2 instances");
    down.addTokens("acme", 70);
    await down.flush();
    faults.failing = false;
    await down.flush();
    assert.deepEqual(
      await new DayBudgets({ kv, clock, usageKey }).usage("acme"),
      { day: (await down.usage("acme")).day, requests: 5, tokens: 70 },
    );
    await down.close();
  });
});

Deno.test("DayBudgets: a key's requests and tokens on its provider's day, which starts at dayStartMs; yesterday's last counts go to yesterday", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock(Date.UTC(2026, 11, 7, 7, 0));
    const eight = 8 * 3_600_000;
    const usageKey = (key: string, day: string, what: string) =>
      keyDayUsageKey("groq", key, day, what);
    const days = new DayBudgets({ kv, clock, usageKey, dayStartMs: eight });
    days.count("k_a", clock.now());
    days.addTokens("k_a", 120);
    days.count("k_a", clock.now());
    days.addTokens("k_a", 30);
    assert.equal((await days.usage("k_a")).day, "2026-12-06", "before 08:00: yesterday's");
    await clock.advance(2 * 3_600_000);
    days.count("k_a", clock.now());
    days.addTokens("k_a", 5);
    await days.flush();
    const other = new DayBudgets({ kv, clock, usageKey, dayStartMs: eight });
    assert.deepEqual(await other.usage("k_a", "2026-12-06"), {
      day: "2026-12-06",
      requests: 2,
      tokens: 150,
    });
    assert.deepEqual(await other.usage("k_a"), { day: "2026-12-07", requests: 1, tokens: 5 });
    await days.close();
  });
});

Deno.test("DayBudgets: counts of many names go to KV in one commit a flush, only budgeted days are read back, and many are read five to a read", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    let commits = 0, reads = 0;
    const counted = new Proxy(kv, {
      get(target, prop) {
        if (prop === "atomic") {
          return () => {
            const op = target.atomic();
            const commit = op.commit.bind(op);
            op.commit = () => (commits++, commit());
            return op;
          };
        }
        if (prop === "getMany") reads++;
        const v = Reflect.get(target, prop);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const days = new DayBudgets({ kv: counted, clock, usageKey });
    for (let i = 0; i < 30; i++) {
      days.count(`key-${i}`, clock.now());
      days.addTokens(`key-${i}`, 10);
    }
    await days.flush();
    assert.deepEqual([commits, reads], [1, 0], "one commit, nothing read back");
    days.count("key-3", clock.now());
    const twelve = await days.usageOf(Array.from({ length: 12 }, (_, i) => `key-${i}`));
    assert.equal(reads, 3, "the status's twelve keys in three reads");
    assert.deepEqual(twelve.map((u) => [u.requests, u.tokens]).slice(2, 5), [[1, 10], [2, 10], [
      1,
      10,
    ]]);
    assert.deepEqual(await days.usage("key-29"), {
      day: (await days.usage("key-0")).day,
      requests: 1,
      tokens: 10,
    });
    await days.close();
  });
});

Deno.test("DayBudgets: KV failing → counts without a budget are kept, and reach KV once when it answers", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const faults = { latencyMs: 0, failing: true, ops: 0 };
    const days = new DayBudgets({
      kv: faultyKv(kv, faults),
      clock,
      usageKey,
      call: { attempts: 1 },
    });
    days.count("k_a", clock.now());
    days.addTokens("k_a", 10);
    await days.flush();
    faults.failing = false;
    await days.flush();
    await days.flush();
    assert.deepEqual(
      await new DayBudgets({ kv, clock, usageKey }).usage("k_a"),
      { day: (await days.usage("k_a")).day, requests: 1, tokens: 10 },
    );
    await days.close();
  });
});

Deno.test("DayBudgets: flushMs must be positive", () => {
  assert.throws(
    () => new DayBudgets({ kv: {} as Deno.Kv, clock: new FakeClock(), usageKey, flushMs: 0 }),
    (e: unknown) => e instanceof RangeError && e.message.includes("flushMs"),
  );
});
