import assert from "node:assert/strict";
import { type DemandBoard, FairGate, type InstanceDemand } from "../../teams/mod.ts";
import { TeamLane } from "../../teams/team_lane.ts";
import { FakeClock } from "../support/fake_clock.ts";

/** A board several gates share in memory, as instances share KV. */
class MemoryBoard {
  records = new Map<string, InstanceDemand>();
  for(id: string): DemandBoard {
    return {
      exchange: (mine) => {
        this.records.set(id, mine);
        return Promise.resolve([...this.records.values()]);
      },
    };
  }
}

/** Keeps `n` requests of `team` at `gate`, each sent again 200 ms after it passes; counts passes. */
function flood(
  clock: FakeClock,
  gate: FairGate,
  team: string,
  weight: number,
  n: number,
  passed: Map<string, number>,
  bulk = false,
) {
  const one = () => {
    const r = gate.enter(team, weight, bulk, Infinity);
    const done = (p: { ok: boolean }) => {
      if (!p.ok) return;
      passed.set(team, (passed.get(team) ?? 0) + 1);
      gate.sent(team);
      clock.setTimeout(one, 200);
    };
    if (r instanceof Promise) r.then(done);
    else done(r);
  };
  for (let i = 0; i < n; i++) one();
}

Deno.test("fair gate: two instances agree on 3:1 for teams flooding through different instances", async () => {
  const clock = new FakeClock();
  const board = new MemoryBoard();
  const g1 = new FairGate({ rate: 20, board: board.for("i1"), clock });
  const g2 = new FairGate({ rate: 20, board: board.for("i2"), clock });
  const passed = new Map<string, number>();
  flood(clock, g1, "a", 3, 10, passed);
  flood(clock, g2, "b", 1, 10, passed);
  flood(clock, g2, "c", 1, 10, passed);
  await clock.advance(2000);
  passed.clear();
  await clock.advance(5000);
  // Each is held to its share: a 20 × 3/5 = 12, b and c 20 × 1/5 = 4 per second.
  assert.ok(Math.abs(passed.get("b")! - 20) <= 2, `b: ${passed.get("b")}`);
  assert.ok(Math.abs(passed.get("c")! - 20) <= 2, `c: ${passed.get("c")}`);
  assert.deepEqual([...g1.shares!].sort(), [["a", 12], ["b", 4], ["c", 4]]);
  g1.close();
  g2.close();
});

Deno.test("fair gate: while demand fits in the rate nobody waits; a newcomer passes at once when others are held back", async () => {
  const clock = new FakeClock();
  const board = new MemoryBoard();
  const gate = new FairGate({ rate: 20, board: board.for("i1"), clock });
  assert.deepEqual(gate.enter("a", 1, false, Infinity), { ok: true });
  gate.sent("a");
  await clock.advance(1000);
  assert.equal(gate.shares, undefined);
  const passed = new Map<string, number>();
  flood(clock, gate, "a", 1, 30, passed);
  flood(clock, gate, "b", 1, 30, passed);
  await clock.advance(1000);
  assert.notEqual(gate.shares, undefined);
  assert.deepEqual(gate.enter("newcomer", 1, false, Infinity), { ok: true });
  gate.close();
});

Deno.test("fair gate: a held team's bulk requests wait behind its interactive ones; a deadline refuses", async () => {
  const clock = new FakeClock();
  const board = new MemoryBoard();
  const gate = new FairGate({ rate: 10, board: board.for("i1"), clock });
  const passed = new Map<string, number>();
  flood(clock, gate, "a", 1, 10, passed);
  flood(clock, gate, "b", 1, 10, passed, true);
  await clock.advance(1000);
  const order: string[] = [];
  // b (flooding its bulk lane) is held to half the rate: a bulk request, then an interactive one, wait.
  const bulk = gate.enter("b", 1, true, Infinity);
  const interactive = gate.enter("b", 1, false, Infinity);
  assert.ok(bulk instanceof Promise && interactive instanceof Promise);
  bulk.then(() => order.push("bulk"));
  interactive.then(() => order.push("interactive"));
  const late = gate.enter("b", 1, false, clock.now() + 10);
  await clock.advance(10_000);
  assert.deepEqual(order, ["interactive", "bulk"]);
  const refused = await late;
  assert.equal(refused.ok, false);
  assert.equal(!refused.ok && refused.reason, "queue_timeout");
  gate.close();
});

Deno.test("fair gate: timers that fire late (a busy event loop) cost no team its share: 3:1 over three instances, each team within 2% of its share", async () => {
  const clock = new FakeClock();
  // Every timer of the gates fires 25 ms after it was due.
  const late = {
    now: () => clock.now(),
    setTimeout: (fn: () => void, ms: number) => clock.setTimeout(fn, ms + 25),
    clearTimeout: (h: ReturnType<FakeClock["setTimeout"]>) => clock.clearTimeout(h),
  };
  const board = new MemoryBoard();
  const gates = ["i1", "i2", "i3"].map((id) =>
    new FairGate({ rate: 20, burst: 2, board: board.for(id), clock: late })
  );
  const passed = new Map<string, number>();
  for (const g of gates) {
    flood(clock, g, "a", 3, 6, passed);
    flood(clock, g, "b", 1, 6, passed);
  }
  // Every promise here settles in microtasks: 5 ms steps with those run between keep this fast.
  const run = async (ms: number) => {
    for (let t = 0; t < ms; t += 5) {
      clock.advanceSync(5);
      for (let i = 0; i < 20; i++) await null;
    }
  };
  await run(3000);
  passed.clear();
  await run(12_000);
  // a: 20 × 3/4 = 15 per second, b: 5; each split over three instances (one pass per 600 ms for b).
  const a = passed.get("a")!, b = passed.get("b")!;
  assert.ok(Math.abs(a - 180) <= 3.6, `a: ${a} of 180`);
  assert.ok(Math.abs(b - 60) <= 1.2, `b: ${b} of 60`);
  for (const g of gates) g.close();
});

Deno.test("fair gate: paceOf() is each team's pace here: its share, split by where its demand is", async () => {
  const clock = new FakeClock();
  const board = new MemoryBoard();
  const g1 = new FairGate({ rate: 20, board: board.for("i1"), clock });
  const g2 = new FairGate({ rate: 20, board: board.for("i2"), clock });
  const passed = new Map<string, number>();
  flood(clock, g2, "a", 3, 2, passed);
  assert.equal(g2.paceOf("a"), undefined, "nobody held back yet");
  // a's demand is mostly at g2, b's mostly at g1.
  flood(clock, g2, "a", 3, 8, passed);
  flood(clock, g1, "a", 3, 1, passed);
  flood(clock, g1, "b", 1, 9, passed);
  flood(clock, g2, "b", 1, 1, passed);
  await clock.advance(3000);
  const [a1, a2, b1, b2] = [g1.paceOf("a")!, g2.paceOf("a")!, g1.paceOf("b")!, g2.paceOf("b")!];
  assert.ok(Math.abs(a1 + a2 - 15) < 1, `a's share: ${a1} + ${a2}`);
  assert.ok(Math.abs(b1 + b2 - 5) < 0.5, `b's share: ${b1} + ${b2}`);
  // Here b is let in faster than a: weighed 3:1 by the teams' weights, a line short of tokens
  // here would give a three times b's part, and b would fall short of its share.
  assert.ok(b1 > a1, `here a ${a1.toFixed(2)}, b ${b1.toFixed(2)}`);
  g1.close();
  g2.close();
});

/** `board`'s exchange for `id`, answered `ms` later on the fake clock (KV 120 ms away). */
function slow(board: MemoryBoard, id: string, clock: FakeClock, ms: number): DemandBoard {
  const inner = board.for(id);
  return {
    exchange: (mine) =>
      new Promise((resolve) => clock.setTimeout(() => resolve(inner.exchange(mine)), ms)),
  };
}

Deno.test("fair gate: a team that arrives here while an exchange is out gets its part of its share here, not a pace of 0 that holds it for good", async () => {
  const clock = new FakeClock();
  const board = new MemoryBoard();
  const here = new FairGate({ rate: 20, board: slow(board, "i1", clock, 120), clock });
  const there = new FairGate({ rate: 20, board: board.for("i2"), clock });
  const passed = new Map<string, number>();
  flood(clock, there, "a", 3, 6, passed);
  flood(clock, there, "b", 1, 6, passed);
  flood(clock, here, "b", 1, 6, passed);
  // Here, the first exchange leaves at 250 ms and is answered at 370 ms; team a comes at 300 ms,
  // in no record of this instance's yet, and its requests wait upstream (not yet sent).
  await clock.advance(300);
  const entered = Array.from({ length: 4 }, () => here.enter("a", 3, false, Infinity));
  await clock.advance(3000);
  const passes = await Promise.all(entered);
  assert.deepEqual(passes.map((p) => p.ok), [true, true, true, true]);
  assert.ok((here.paceOf("a") ?? 0) > 0, `a's pace here: ${here.paceOf("a")}`);
  here.close();
  there.close();
});

Deno.test("team lane: passes owed stay owed as passes when its pace changes, not as time", () => {
  const lane = new TeamLane();
  lane.pace(1, 0);
  lane.tat = 6000; // six passes behind at one a second
  lane.pace(6, 0);
  assert.equal(lane.tat, 1000, "made up in a second at six a second");
  lane.pace(0, 0);
  lane.pace(3, 0);
  assert.equal(lane.tat, 1000, "no pace to scale by: left as it was");
});
