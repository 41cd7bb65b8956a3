import assert from "node:assert/strict";
import { allocate, localPart } from "../../teams/mod.ts";

const demands = (entries: Record<string, [weight: number, demand: number]>) =>
  new Map(Object.entries(entries).map(([k, [weight, demand]]) => [k, { weight, demand }]));

Deno.test("allocate: demands that fit in the rate hold nobody back", () => {
  assert.equal(allocate(20, demands({ a: [3, 12], b: [1, 7] })), undefined);
  assert.equal(allocate(20, demands({ a: [3, 500] })), undefined); // a team alone gets everything
});

Deno.test("allocate: two flooding teams split the rate by weight", () => {
  const shares = allocate(20, demands({ a: [3, 45], b: [1, 65] }))!;
  assert.equal(shares.get("a"), 15);
  assert.equal(shares.get("b"), 5);
});

Deno.test("allocate: a team wanting less than its share gets what it wants; the rest is split by weight", () => {
  const shares = allocate(20, demands({ a: [3, 100], b: [1, 100], c: [1, 2] }))!;
  assert.equal(shares.get("c"), 2);
  assert.equal(shares.get("a"), 13.5);
  assert.equal(shares.get("b"), 4.5);
  let total = 0;
  for (const v of shares.values()) total += v;
  assert.equal(total, 20);
});

Deno.test("localPart: a team's share is split between instances by their demand for it", () => {
  assert.equal(localPart(5, 10, 20), 2.5);
  assert.equal(localPart(5, 0, 0), 0);
});
