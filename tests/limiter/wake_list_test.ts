/** The waiting core's timed wait: ends at its time, at a wake, or at an abort, and leaves nothing. */
import assert from "node:assert/strict";
import { WakeList } from "../../limiter/mod.ts";
import { FakeClock, flush } from "../support/fake_clock.ts";

/** Whether `p` has settled (after letting queued callbacks run), and with what. */
async function peek<T>(p: Promise<T>): Promise<{ done: boolean; value?: T }> {
  let out: { done: boolean; value?: T } = { done: false };
  p.then((value) => out = { done: true, value });
  await flush();
  return out;
}

Deno.test("a wait ends true at its time, not before, and holds no timer after", async () => {
  const clock = new FakeClock();
  const list = new WakeList(clock);
  const waited = list.wait(clock.now() + 1000);
  await clock.advance(999);
  assert.deepEqual(await peek(waited), { done: false });
  await clock.advance(1);
  assert.deepEqual(await peek(waited), { done: true, value: true });
  assert.equal(list.size, 0);
  assert.equal(clock.pending, 0);
});

Deno.test("wake() ends every wait at once, an endless one too, and clears their timers", async () => {
  const clock = new FakeClock();
  const list = new WakeList(clock);
  const a = list.wait(clock.now() + 60_000);
  const b = list.wait(Infinity);
  assert.equal(list.size, 2);
  list.wake();
  assert.deepEqual(await peek(a), { done: true, value: true });
  assert.deepEqual(await peek(b), { done: true, value: true });
  assert.equal(clock.pending, 0, "no timer left to fire later");
  list.wake(); // nobody waits: nothing happens
  assert.equal(list.size, 0);
});

Deno.test("an abort ends the wait false and leaves the others waiting", async () => {
  const clock = new FakeClock();
  const list = new WakeList(clock);
  const client = new AbortController();
  const gone = list.wait(clock.now() + 5000, client.signal);
  const staying = list.wait(clock.now() + 5000);
  client.abort();
  assert.deepEqual(await peek(gone), { done: true, value: false });
  assert.deepEqual(await peek(staying), { done: false });
  assert.equal(list.size, 1);
  assert.equal(
    await list.wait(clock.now() + 5000, client.signal),
    false,
    "aborted before: at once",
  );
  await clock.advance(5000);
  assert.deepEqual(await peek(staying), { done: true, value: true });
});
