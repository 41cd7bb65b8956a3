import assert from "node:assert/strict";
import { FakeClock } from "../support/fake_clock.ts";
import { TimeoutSweeper } from "../../lib/mod.ts";

Deno.test("sweeper.add() fires never early, at most one resolution late, on one timer", async () => {
  const clock = new FakeClock();
  const sweeper = new TimeoutSweeper(clock, 100);
  const start = clock.now();
  const fired: number[] = [];
  for (const ms of [150, 250, 1000]) sweeper.add(ms, () => fired.push(clock.now() - start));
  assert.deepEqual(clock.pending, 1, "three timeouts, one runtime timer");
  await clock.advance(149);
  assert.deepEqual(fired, [], "nothing before its time");
  await clock.advance(1000);
  assert.deepEqual(fired, [200, 300, 1000]);
  assert.deepEqual(sweeper.size, 0);
  assert.deepEqual(clock.pending, 0, "no timer left once nothing is pending");
});

Deno.test("sweeper: a cancelled timeout never fires", async () => {
  const clock = new FakeClock();
  const sweeper = new TimeoutSweeper(clock, 10);
  let fired = false;
  const cancel = sweeper.at(clock.now() + 50, () => fired = true);
  cancel();
  await clock.advance(100);
  assert(!fired);
  assert.deepEqual(sweeper.size, 0);
});

Deno.test("sweeper: cancelling in any order, and from a firing callback, fires exactly the rest", async () => {
  const clock = new FakeClock();
  const sweeper = new TimeoutSweeper(clock, 10);
  const start = clock.now();
  const fired: number[] = [];
  const cancels = Array.from({ length: 20 }, (_, i) =>
    sweeper.at(start + 50 + (i % 3), () => {
      fired.push(i);
      // 4 and 7 fall due in the same sweep and cancel each other: one fires.
      if (i === 4) cancels[7]();
      if (i === 7) cancels[4]();
      if (i === 5) sweeper.at(start + 500, () => fired.push(100)); // added while sweeping
    }));
  for (const i of [19, 0, 10, 3, 18]) cancels[i]();
  cancels[10](); // twice is harmless
  assert.deepEqual(sweeper.size, 15);
  await clock.advance(100);
  assert.deepEqual(fired.filter((i) => i === 4 || i === 7).length, 1, `4 xor 7 in ${fired}`);
  assert.deepEqual(
    fired.filter((i) => i !== 4 && i !== 7).sort((a, b) => a - b),
    [1, 2, 5, 6, 8, 9, 11, 12, 13, 14, 15, 16, 17],
  );
  assert.deepEqual(sweeper.size, 1, "the one added while sweeping is still pending");
  await clock.advance(500);
  assert.deepEqual(fired.at(-1), 100);
  assert.deepEqual(sweeper.size, 0);
  assert.deepEqual(clock.pending, 0);
});

Deno.test("new TimeoutSweeper() refuses a resolution that is not positive", () => {
  let message = "";
  try {
    new TimeoutSweeper(new FakeClock(), 0);
  } catch (e) {
    message = (e as RangeError).message;
  }
  assert.deepEqual(message, "resolutionMs must be > 0 (got 0)");
});
