import { assert, assertEquals } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { TimeoutSweeper } from "../../limiter/mod.ts";

Deno.test("sweeper.add() fires never early, at most one resolution late, on one timer", async () => {
  const clock = new FakeClock();
  const sweeper = new TimeoutSweeper(clock, 100);
  const start = clock.now();
  const fired: number[] = [];
  for (const ms of [150, 250, 1000]) sweeper.add(ms, () => fired.push(clock.now() - start));
  assertEquals(clock.pending, 1, "three timeouts, one runtime timer");
  await clock.advance(149);
  assertEquals(fired, [], "nothing before its time");
  await clock.advance(1000);
  assertEquals(fired, [200, 300, 1000]);
  assertEquals(sweeper.size, 0);
  assertEquals(clock.pending, 0, "no timer left once nothing is pending");
});

Deno.test("sweeper: a cancelled timeout never fires", async () => {
  const clock = new FakeClock();
  const sweeper = new TimeoutSweeper(clock, 10);
  let fired = false;
  const cancel = sweeper.at(clock.now() + 50, () => fired = true);
  cancel();
  await clock.advance(100);
  assert(!fired);
  assertEquals(sweeper.size, 0);
});

Deno.test("new TimeoutSweeper() refuses a resolution that is not positive", () => {
  let message = "";
  try {
    new TimeoutSweeper(new FakeClock(), 0);
  } catch (e) {
    message = (e as RangeError).message;
  }
  assertEquals(message, "resolutionMs must be > 0 (got 0)");
});
