/**
 * The provider-wide pause's waits, in memory on the fake clock: a request
 * waiting out the pause looks again as soon as the pause changes, not when
 * the time it was told runs out.
 */
import assert from "node:assert/strict";
import { ProviderBackoff } from "../../keys/mod.ts";
import { FakeClock, flush } from "../support/fake_clock.ts";
import { faultyKv } from "../support/faulty_kv.ts";
import { withMemoryKv } from "../support/kv.ts";

function paused(clock: FakeClock, keys = 1): ProviderBackoff {
  const backoff = new ProviderBackoff({ service: "openai", keys, clock, instanceId: "i1" });
  backoff.sending();
  backoff.answered("k_a", true, 20_000, clock.now(), false);
  backoff.settled();
  assert.equal(backoff.pause?.until, clock.now() + 20_000, "the only key's 429 pauses 20 s");
  return backoff;
}

async function settledBy<T>(p: Promise<T>): Promise<boolean> {
  let done = false;
  p.then(() => done = true);
  await flush();
  return done;
}

Deno.test("a request waiting out the pause is woken by an admin's resume, then may go", async () => {
  const clock = new FakeClock();
  const backoff = paused(clock);
  const turn = await backoff.turn(clock.now());
  assert.equal(turn.go, false);
  const waiting = backoff.waitForTurn(turn.go ? 0 : turn.untilMs);
  await clock.advance(1000);
  assert.equal(await settledBy(waiting), false, "the pause stands: still waiting");
  await backoff.adminResume();
  assert.equal(await settledBy(waiting), true, "woken 19 s early");
  assert.deepEqual(await backoff.turn(clock.now()), { go: true, probe: false });
});

Deno.test("a request waiting on the probe is woken by the probe's answer, not a poll later", async () => {
  const clock = new FakeClock();
  const backoff = paused(clock);
  await clock.advance(20_000);
  assert.deepEqual(await backoff.turn(clock.now()), { go: true, probe: true }, "the one probe");
  const second = await backoff.turn(clock.now());
  assert.equal(second.go, false, "another waits for the probe");
  const waiting = backoff.waitForTurn(second.go ? 0 : second.untilMs);
  backoff.sending();
  backoff.answered("k_a", false, undefined, clock.now(), true);
  backoff.settled();
  assert.equal(await settledBy(waiting), true, "woken at the probe's success, no time passed");
  assert.deepEqual(await backoff.turn(clock.now()), { go: true, probe: false });
});

Deno.test("a waiting request with nothing changing wakes at the pause's end; an abort ends it false", async () => {
  const clock = new FakeClock();
  const backoff = paused(clock);
  const client = new AbortController();
  const until = clock.now() + 20_000;
  const waiting = backoff.waitForTurn(until);
  const leaving = backoff.waitForTurn(until, client.signal);
  await clock.advance(19_999);
  assert.equal(await settledBy(waiting), false);
  client.abort();
  assert.equal(await leaving, false);
  await clock.advance(1);
  assert.equal(await waiting, true);
});

Deno.test("a held retry goes at the next answer, or after maxMs without one", async () => {
  const clock = new FakeClock();
  const backoff = new ProviderBackoff({ service: "openai", keys: 3, clock, instanceId: "i1" });
  const sentAt = clock.now();
  backoff.sending(); // this request
  backoff.sending(); // another, still out
  backoff.answered("k_a", true, undefined, sentAt, false);
  backoff.settled();
  const held = backoff.holdRetry(sentAt);
  assert(held, "another answer is on its way: the retry waits for it");
  assert.equal(await settledBy(held), false);
  backoff.answered("k_b", false, undefined, sentAt, false);
  backoff.settled();
  assert.equal(await settledBy(held), true, "the answer came");
  backoff.sending();
  const alone = backoff.holdRetry(sentAt - 1);
  assert.equal(alone, undefined, "a success sent after it: no hold");
  const later = clock.now() + 1;
  backoff.answered("k_c", true, undefined, later, false);
  const unanswered = backoff.holdRetry(later, 2000);
  assert(unanswered);
  await clock.advance(2000);
  assert.equal(await settledBy(unanswered), true, "no answer: it goes after maxMs");
});

Deno.test("a claim of the probe lost to another instance wakes nobody: its waiters wait their turn, not claim again at once", async () => {
  const clock = new FakeClock();
  await withMemoryKv(async (kv) => {
    const make = (instanceId: string) =>
      new ProviderBackoff({ service: "openai", keys: 1, clock, instanceId, kv });
    const here = make("here");
    const there = make("there");
    here.sending();
    here.answered("k_a", true, 2000, clock.now(), false);
    here.settled();
    await flush();
    await there.refresh();
    await clock.advance(2000);
    assert.deepEqual(await here.turn(clock.now()), { go: true, probe: true }, "here probes");
    const first = await there.turn(clock.now());
    assert.equal(first.go, false, "there lost the claim");
    const waiting = there.waitForTurn(first.go ? 0 : first.untilMs);
    const second = await there.turn(clock.now());
    assert.equal(second.go, false, "lost again");
    assert.equal(await settledBy(waiting), false, "the second loss woke no one");
  });
});

Deno.test("an admin's pause replaced in KV by a provider's pause (resumed, then 429s) ends on an instance that reads it: it does not stay paused for good", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const at = (instanceId: string) =>
      new ProviderBackoff({ service: "openai", keys: 1, clock, instanceId, kv });
    const [a, b, c] = [at("a"), at("b"), at("c")];
    await a.adminPause();
    await b.refresh();
    assert.equal(b.pause?.admin, true, "b has read the admin's pause");
    await a.adminResume();
    // Before b reads again, c (which had not read the pause) has its only key refused.
    c.sending();
    c.answered("k_a", true, 10_000, clock.now(), false);
    c.settled();
    await flush();
    await b.refresh();
    assert.equal(b.pause?.admin, undefined, "the admin's pause is over on b too");
    assert.equal(b.pause?.until, clock.now() + 10_000, "b holds the provider's pause instead");
    await clock.advance(10_000);
    assert.deepEqual(await b.turn(clock.now()), { go: true, probe: true }, "and probes after it");
  });
});

Deno.test("an admin's resume ends a provider's pause on every instance that had read it, at its next read", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const at = (instanceId: string) =>
      new ProviderBackoff({ service: "openai", keys: 1, clock, instanceId, kv });
    const [a, b] = [at("a"), at("b")];
    a.sending();
    a.answered("k_a", true, 60_000, clock.now(), false);
    a.settled();
    await flush();
    await b.refresh();
    assert.equal(b.pause?.until, clock.now() + 60_000, "b has read the provider's pause");
    await a.adminResume();
    await b.refresh();
    assert.equal(b.pause, undefined, "the resume reaches b, 60 s before the pause's end");
    assert.deepEqual(await b.turn(clock.now()), { go: true, probe: false });
  });
});

Deno.test("a provider's pause this instance could not write (KV down) is kept at a read that does not find it", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const faults = { latencyMs: 0, failing: true, ops: 0 };
    const backoff = new ProviderBackoff({
      service: "openai",
      keys: 1,
      clock,
      instanceId: "a",
      kv: faultyKv(kv, faults),
      call: { attempts: 1 },
    });
    backoff.sending();
    backoff.answered("k_a", true, 60_000, clock.now(), false);
    backoff.settled();
    await flush();
    faults.failing = false;
    await backoff.refresh();
    assert.equal(backoff.pause?.until, clock.now() + 60_000, "kept: KV has not heard of it");
  });
});
