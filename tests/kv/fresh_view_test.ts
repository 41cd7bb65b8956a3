/**
 * FreshView: a view other instances change, read when a request needs it:
 * in the background when it is getting old, before the request when it is
 * too old (for a bounded time), not at all while KV is down or nothing asks.
 */
import assert from "node:assert/strict";
import { FreshView, type FreshViewOptions, KvStatus } from "../../kv/mod.ts";
import { FakeClock } from "../support/fake_clock.ts";

/** A view whose reads resolve (or fail) only when told to; counts them. */
function slowView(clock: FakeClock, extra: Partial<FreshViewOptions> = {}) {
  let reads = 0;
  let settle: (ok: boolean) => void = () => {};
  const errors: unknown[] = [];
  const view = new FreshView({
    clock,
    read: () => {
      reads++;
      return new Promise<void>((resolve, reject) =>
        settle = (ok) => ok ? resolve() : reject(new Error("kv down"))
      );
    },
    onError: (e) => errors.push(e),
    refreshAfterMs: 1000,
    waitAfterMs: 2000,
    waitAtMostMs: 250,
    ...extra,
  });
  return { view, reads: () => reads, answer: (ok = true) => settle(ok), errors };
}

/** A view read once, at the clock's start. */
async function readOnce(clock: FakeClock) {
  const s = slowView(clock);
  const first = s.view.fresh()!;
  s.answer();
  await first;
  return s;
}

/** Whether `p` has settled once the clock has moved `ms` (0: only the pending jobs run). */
async function settledAfter(clock: FakeClock, p: Promise<void>, ms: number): Promise<boolean> {
  let done = false;
  p.then(() => done = true);
  await clock.advance(ms);
  return done;
}

Deno.test("FreshView: a request waits for a view older than waitAfterMs, at most waitAtMostMs; then acts on the last view", async () => {
  const clock = new FakeClock();
  const s = slowView(clock);
  const first = s.view.fresh();
  assert.ok(first instanceof Promise, "never read: the request waits");
  assert.equal(await settledAfter(clock, first, 249), false);
  assert.equal(await settledAfter(clock, first, 1), true, "250 ms at most");
  assert.equal(s.reads(), 1);
  assert.ok(s.view.fresh() instanceof Promise, "the read still runs: the next request waits on it");
  assert.equal(s.reads(), 1, "one read at a time");
  s.answer();
  await clock.advance(0);
  assert.equal(s.view.fresh(), undefined, "read: fresh");
});

Deno.test("FreshView: between refreshAfterMs and waitAfterMs the view is read in the background, once; a failed read keeps the view and is told", async () => {
  const clock = new FakeClock();
  const s = await readOnce(clock);
  await clock.advance(999);
  assert.equal(s.view.fresh(), undefined);
  assert.equal(s.reads(), 1, "younger than refreshAfterMs: no read");
  await clock.advance(1);
  assert.equal(s.view.fresh(), undefined, "the request goes on");
  assert.equal(s.view.fresh(), undefined);
  assert.equal(s.reads(), 2, "one background read for both");
  s.answer(false);
  await clock.advance(0);
  assert.equal(s.errors.length, 1);
  assert.equal(
    s.view.fresh(),
    undefined,
    "a failed read counts as a look: no request waits on KV trouble",
  );
});

Deno.test("FreshView: while KV is down no request waits and nothing is read; forget() makes the next request read", async () => {
  const clock = new FakeClock();
  const status = new KvStatus({ clock, probe: () => new Promise(() => {}), up: false });
  const s = slowView(clock, { status });
  assert.equal(s.view.fresh(), undefined);
  assert.equal(s.reads(), 0);
  status.close();
  const up = slowView(clock);
  const first = up.view.fresh()!;
  up.answer();
  await first;
  up.view.forget();
  assert.ok(up.view.fresh() instanceof Promise, "forgotten: read before the next request");
});

Deno.test("FreshView: changes heard by a watch read the view at once, then at most every changedSpacingMs, never two reads at a time", async () => {
  const clock = new FakeClock();
  const s = slowView(clock);
  s.view.changed();
  assert.equal(s.reads(), 1, "at once");
  s.view.changed();
  assert.equal(s.reads(), 1, "one read at a time: again once it ends");
  s.answer();
  await clock.advance(0);
  assert.equal(s.reads(), 1, "not before changedSpacingMs since the last read began");
  await clock.advance(250);
  assert.equal(s.reads(), 2);
  s.answer();
  await clock.advance(0);
  s.view.changed();
  s.view.close();
  await clock.advance(1000);
  assert.equal(s.reads(), 2, "closed: the scheduled read is dropped");
});

Deno.test("FreshView: refreshAfterMs <= waitAfterMs and waitAtMostMs > 0, named when not", () => {
  const clock = new FakeClock();
  const read = () => Promise.resolve();
  const base = { clock, read, refreshAfterMs: 10, waitAfterMs: 20, waitAtMostMs: 5 };
  assert.throws(() => new FreshView({ ...base, waitAfterMs: 5 }), /waitAfterMs/);
  assert.throws(() => new FreshView({ ...base, refreshAfterMs: -1 }), /refreshAfterMs/);
  assert.throws(() => new FreshView({ ...base, waitAtMostMs: 0 }), /waitAtMostMs/);
});

Deno.test("FreshView: refreshSoon() reads a view refreshAfterMs old in the background and returns; a younger one is left", async () => {
  const clock = new FakeClock();
  const s = await readOnce(clock);
  await clock.advance(999);
  s.view.refreshSoon();
  assert.equal(s.reads(), 1);
  await clock.advance(5000);
  s.view.refreshSoon();
  assert.equal(s.reads(), 2, "old: read, no one waiting");
  s.answer();
  await clock.advance(0);
  assert.equal(s.view.fresh(), undefined, "and the next request finds it fresh");
});
