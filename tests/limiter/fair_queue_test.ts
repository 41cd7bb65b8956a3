import assert from "node:assert/strict";
import { FairQueue, type Waiter } from "../../limiter/mod.ts";

function waiter(team: string, weight = 1, bulk = false, tag = team): Waiter & { tag: string } {
  return { resolve: () => {}, done: false, team, weight, bulk, tag };
}

function drain(q: FairQueue, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const w = q.shift() as (Waiter & { tag: string }) | undefined;
    if (!w) break;
    q.live--;
    out.push(w.tag);
  }
  return out;
}

Deno.test("fair queue: two waiting teams take turns 3:1 by weight", () => {
  const q = new FairQueue();
  for (let i = 0; i < 40; i++) q.push(waiter("a", 3));
  for (let i = 0; i < 40; i++) q.push(waiter("b", 1));
  const first = drain(q, 40);
  assert.equal(first.filter((t) => t === "a").length, 30);
  assert.equal(first.filter((t) => t === "b").length, 10);
});

Deno.test("fair queue: an idle team's request goes before a flooding team's backlog", () => {
  const q = new FairQueue();
  for (let i = 0; i < 300; i++) q.push(waiter("a"));
  drain(q, 5);
  q.push(waiter("c"));
  assert.deepEqual(drain(q, 2).includes("c"), true);
});

Deno.test("fair queue: within a team interactive before bulk, first in first out; a retry goes first", () => {
  const q = new FairQueue();
  q.push(waiter("a", 1, true, "bulk-1"));
  q.push(waiter("a", 1, true, "bulk-2"));
  q.push(waiter("a", 1, false, "interactive"));
  q.push(waiter("a", 1, false, "retry"), true);
  assert.deepEqual(drain(q, 4), ["retry", "interactive", "bulk-1", "bulk-2"]);
});

Deno.test("fair queue: a waiter that left is skipped and no longer counted", () => {
  const q = new FairQueue();
  const gone = waiter("a", 1, false, "gone");
  q.push(gone);
  q.push(waiter("a", 1, false, "kept"));
  gone.done = true;
  q.left(gone);
  assert.equal(q.live, 1);
  assert.deepEqual(drain(q, 2), ["kept"]);
});
