import assert from "node:assert/strict";
import { capTokens, fullBucket, msUntilToken, refill, takeTokens } from "../../limiter/mod.ts";

const rate = { rps: 4, burst: 8 };

Deno.test("refill() adds rps per second and never goes above burst", () => {
  const s = { tokens: 0, updatedAt: 0 };
  assert.deepEqual(refill(s, 500, rate).tokens, 2);
  assert.deepEqual(refill(s, 10_000, rate).tokens, 8);
  assert.deepEqual(s.tokens, 0, "the argument is not mutated");
});

Deno.test("refill() adds nothing when the clock is behind the state (skew between instances)", () => {
  const s = { tokens: 3, updatedAt: 1000 };
  assert.deepEqual(refill(s, 900, rate), s);
});

Deno.test("takeTokens() grants whole tokens only, up to what the bucket holds", () => {
  assert.deepEqual(takeTokens({ tokens: 2.5, updatedAt: 0 }, 5).granted, 2);
  assert.deepEqual(takeTokens({ tokens: 0.99, updatedAt: 0 }, 1).granted, 0);
  assert.deepEqual(takeTokens(fullBucket(0, rate), 3).state.tokens, 5);
});

Deno.test("msUntilToken() tells how long until one whole token", () => {
  assert.deepEqual(msUntilToken({ tokens: 0, updatedAt: 0 }, rate), 250);
  assert.deepEqual(msUntilToken({ tokens: 0.5, updatedAt: 0 }, rate), 125);
  assert.deepEqual(msUntilToken({ tokens: 1, updatedAt: 0 }, rate), 0);
});

Deno.test("capTokens: the provider's word lowers the bucket to what is left, never raises it or below 0", () => {
  const s = { tokens: 5, updatedAt: 100 };
  assert.deepEqual(capTokens(s, 2), { tokens: 2, updatedAt: 100 });
  assert.equal(capTokens(s, 9), s, "holding no more: the same state, nothing to write");
  assert.deepEqual(capTokens(s, -3), { tokens: 0, updatedAt: 100 });
});
