/**
 * ServiceRuntime.fresh: how old the key-health view a request acts on may
 * be, and when a request waits for it to be read again.
 */
import assert from "node:assert/strict";
import type { Service } from "../../config/mod.ts";
import type { KeyPool } from "../../keys/mod.ts";
import type { DayBudgets, ScopeLimiter } from "../../limiter/mod.ts";
import { ServiceRuntime } from "../../gateway/runtime.ts";
import { FakeClock } from "../support/fake_clock.ts";

/** A runtime whose key-health reads (KV at 120 ms, say) resolve only when `answer()` is called. */
function slowReads(clock: FakeClock) {
  let reads = 0;
  let answer = () => {};
  const pool = {
    keys: [],
    refresh: () => {
      reads++;
      return new Promise<void>((r) => answer = r);
    },
  } as unknown as KeyPool;
  const rt = new ServiceRuntime({
    service: { name: "groq" } as Service,
    pool,
    limiter: {} as ScopeLimiter,
    keyDays: {} as DayBudgets,
    clock,
    onError: (e) => {
      throw e;
    },
  });
  return { rt, reads: () => reads, answer: () => answer() };
}

Deno.test("runtime: unwatched, a view over a second old is read again and the request waits for it (at most 250 ms)", async () => {
  const clock = new FakeClock();
  const s = slowReads(clock);
  const first = s.rt.fresh();
  assert.ok(first instanceof Promise, "the first request waits for the first read");
  s.answer();
  await first;
  await clock.advance(600);
  assert.equal(s.rt.fresh(), undefined, "half a second old: read in the background");
  assert.equal(s.reads(), 2);
  s.answer();
  await clock.advance(0);
  await clock.advance(1100);
  assert.ok(s.rt.fresh() instanceof Promise, "over a second old: the request waits");
});

Deno.test("runtime: watched, the backstop read every 30 s goes on in the background; no request waits for it", async () => {
  const clock = new FakeClock();
  const s = slowReads(clock);
  const first = s.rt.fresh();
  s.answer();
  await first;
  s.rt.watchedBy(1);
  s.rt.watchLive(true);
  await clock.advance(5_000);
  assert.equal(s.rt.fresh(), undefined);
  assert.equal(s.reads(), 1, "the watch says when to read: no read on a timer");
  await clock.advance(26_000);
  assert.equal(s.rt.fresh(), undefined, "30 s on: the backstop read does not hold the request");
  assert.equal(s.reads(), 2, "and it is made");
  s.rt.watchLive(false);
  s.answer();
  await clock.advance(0);
  await clock.advance(1_100);
  assert.ok(s.rt.fresh() instanceof Promise, "the watch lost: polled again, as unwatched");
});
