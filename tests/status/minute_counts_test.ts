/**
 * MinuteCounts on `:memory:` KV and the fake clock: answers per service and
 * minute, summed over every instance, nothing lost or counted twice through
 * a KV outage; old records cleared.
 */
import assert from "node:assert/strict";
import { MinuteCounts } from "../../status/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { faultyKv } from "../support/faulty_kv.ts";
import { withMemoryKv } from "../support/kv.ts";
import { keyDayUsageKey, minuteCountKey } from "../../kv/mod.ts";
import { DayBudgets } from "../../limiter/mod.ts";

const MINUTE = 60_000;
const minuteOf = (ms: number) => ms - (ms % MINUTE);

Deno.test("MinuteCounts: two instances' answers in one minute read back as their sums, by kind", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock(minuteOf(1_700_000_000_000));
    const a = new MinuteCounts({ kv, clock });
    const b = new MinuteCounts({ kv, clock });
    const now = clock.now();
    for (const status of [200, 200, 429, 502]) a.answered("groq", status, now);
    b.answered("groq", 200, now);
    b.upstream429("groq", now);
    a.answered("openai", 200, now);
    await a.flush();
    await b.flush();
    assert.deepEqual(await a.read("groq", now - MINUTE, now + MINUTE), [
      { minute: now, requests: 5, refused: 1, errors: 1, upstream429: 1 },
    ]);
    assert.equal((await b.read("openai", now, now + MINUTE))[0].requests, 1);
  });
});

Deno.test("MinuteCounts: each minute is its own record; a flush adds only what KV does not have yet", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock(minuteOf(1_700_000_000_000));
    const counts = new MinuteCounts({ kv, clock });
    const first = clock.now();
    counts.answered("groq", 200, first);
    await counts.flush();
    counts.answered("groq", 200, first + 1000);
    counts.answered("groq", 200, first + MINUTE);
    await counts.flush();
    await counts.flush();
    assert.deepEqual(
      (await counts.read("groq", first, first + 2 * MINUTE)).map((c) => [c.minute, c.requests]),
      [[first, 2], [first + MINUTE, 1]],
    );
  });
});

Deno.test("MinuteCounts: a joined day counter's counts go in the same commit (one KV call); kept while KV fails, written once when it answers", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock(minuteOf(1_700_000_000_000));
    const faults = { latencyMs: 0, failing: false, ops: 0 };
    const flaky = faultyKv(kv, faults);
    const counts = new MinuteCounts({ kv: flaky, clock, call: { attempts: 1 }, random: () => 0 });
    const usageKey = (key: string, day: string, what: string) =>
      keyDayUsageKey("groq", key, day, what);
    const days = new DayBudgets({ kv: flaky, clock, usageKey, timer: false });
    counts.join(days);
    const now = clock.now();
    counts.answered("groq", 200, now);
    days.count("k_a", now);
    days.addTokens("k_a", 10);
    await clock.advance(10_000);
    assert.equal(faults.ops, 0, "the day counter has no timer of its own");
    faults.failing = true;
    await assert.rejects(counts.flush());
    faults.failing = false;
    faults.ops = 0;
    await counts.flush();
    assert.equal(faults.ops, 1, "minutes and the key's day in one commit");
    await counts.flush();
    const read = new DayBudgets({ kv, clock, usageKey });
    assert.deepEqual(await read.usage("k_a"), {
      day: (await read.usage("k_b")).day,
      requests: 1,
      tokens: 10,
    });
    assert.equal((await counts.read("groq", now, now + MINUTE))[0].requests, 1);
  });
});

Deno.test("MinuteCounts: KV failing → the flush throws and keeps everything; the next one adds it once", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock(minuteOf(1_700_000_000_000));
    const faults = { latencyMs: 0, failing: true, ops: 0 };
    const counts = new MinuteCounts({ kv: faultyKv(kv, faults), clock, call: { attempts: 1 } });
    const now = clock.now();
    counts.answered("groq", 200, now);
    await assert.rejects(counts.flush());
    counts.answered("groq", 200, now + MINUTE);
    faults.failing = false;
    await counts.flush();
    await counts.flush();
    const read = new MinuteCounts({ kv, clock });
    assert.deepEqual(
      (await read.read("groq", now, now + 2 * MINUTE)).map((c) => c.requests),
      [1, 1],
    );
  });
});

Deno.test("MinuteCounts: minute records older than an hour go at a flush", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock(minuteOf(1_700_000_000_000));
    const counts = new MinuteCounts({ kv, clock });
    const old = clock.now();
    counts.answered("groq", 200, old);
    await counts.flush();
    await clock.advance(61 * MINUTE);
    counts.answered("groq", 200, clock.now());
    await counts.flush();
    const kept = await counts.read("groq", 0, clock.now() + MINUTE);
    assert.deepEqual(kept.map((c) => c.minute), [minuteOf(clock.now())]);
  });
});

Deno.test("MinuteCounts: a flush is one KV commit; old records are looked for once in 10 minutes, old days once an hour", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock(minuteOf(1_700_000_000_000));
    const faults = { latencyMs: 0, failing: false, ops: 0 };
    // A whole period already gone at the start: the first flush looks (see the next test).
    const counts = new MinuteCounts({ kv: faultyKv(kv, faults), clock, random: () => 1 });
    const opsOfFlush = async () => {
      counts.answered("groq", 200, clock.now());
      const before = faults.ops;
      await counts.flush();
      return faults.ops - before;
    };
    const first = await opsOfFlush();
    assert.ok(first > 1, "the first flush looks for old records");
    for (let i = 0; i < 9; i++) {
      await clock.advance(MINUTE);
      assert.equal(await opsOfFlush(), 1, `minute ${i + 1}: the commit alone`);
    }
    await clock.advance(MINUTE);
    const tenth = await opsOfFlush();
    assert.ok(tenth > 1 && tenth < first, "minute records looked for again, old days not yet");
  });
});

Deno.test("MinuteCounts: an instance looks for old records at a random time within the period, not at its first flush", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock(minuteOf(Date.UTC(2026, 11, 7, 12, 0)));
    const hourAgo = minuteOf(clock.now() - 2 * 3_600_000);
    const oldMinute = minuteCountKey("groq", hourAgo, "requests");
    const oldDay = keyDayUsageKey("groq", "k1", "2026-11-20", "requests");
    await kv.set(oldMinute, new Deno.KvU64(1n));
    await kv.set(oldDay, new Deno.KvU64(1n));
    // Halfway: the first look at minute records after 5 of their 10 minutes, at day records after 30 of 60.
    const counts = new MinuteCounts({ kv, clock, random: () => 0.5 });
    const flushAt = async (ms: number) => {
      await clock.advance(ms);
      counts.answered("groq", 200, clock.now());
      await counts.flush();
    };
    await flushAt(5_000);
    assert.notEqual((await kv.get(oldMinute)).value, null, "the first flush lists nothing");
    await flushAt(5 * 60_000);
    assert.equal((await kv.get(oldMinute)).value, null, "minute records older than an hour go");
    assert.notEqual((await kv.get(oldDay)).value, null, "day records wait for their own period");
    await flushAt(25 * 60_000);
    assert.equal((await kv.get(oldDay)).value, null, "day records older than 8 days go");
  });
});

Deno.test("MinuteCounts: two flushes at once (the timer's and the shutdown's, on slow KV) add each answer once", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock(minuteOf(1_700_000_000_000));
    const slow = faultyKv(kv, { latencyMs: 100, failing: false, ops: 0 }, clock);
    const counts = new MinuteCounts({ kv: slow, clock, random: () => 0 });
    const now = clock.now();
    for (let i = 0; i < 3; i++) counts.answered("groq", 200, now);
    const first = counts.flush();
    counts.answered("groq", 200, now);
    counts.answered("groq", 200, now);
    const second = counts.flush();
    await settle(clock, Promise.all([first, second]), 10);
    const direct = new MinuteCounts({ kv, clock });
    assert.equal((await direct.read("groq", now, now + MINUTE))[0].requests, 5);
  });
});

Deno.test("MinuteCounts: a minute that ends while a flush is on its way keeps its last answers for the next flush", async () => {
  await withMemoryKv(async (kv) => {
    const start = minuteOf(1_700_000_000_000) + MINUTE - 50;
    const clock = new FakeClock(start);
    const slow = faultyKv(kv, { latencyMs: 100, failing: false, ops: 0 }, clock);
    const counts = new MinuteCounts({ kv: slow, clock, random: () => 0 });
    counts.answered("groq", 200, clock.now());
    const flushing = counts.flush(); // lands 100 ms from now, in the next minute
    await clock.advance(10);
    counts.answered("groq", 200, clock.now()); // still the first minute, after the flush began
    await clock.advance(50);
    counts.answered("groq", 200, clock.now()); // the next minute: the first one ends
    await settle(clock, flushing, 10);
    await settle(clock, counts.flush(), 10);
    const direct = new MinuteCounts({ kv, clock });
    const minutes = await direct.read("groq", minuteOf(start), minuteOf(start) + 2 * MINUTE);
    assert.deepEqual(minutes.map((c) => c.requests), [2, 1], "every answer, in its minute");
  });
});
