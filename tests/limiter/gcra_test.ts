import assert from "node:assert/strict";
import {
  emissionMicros,
  handBack,
  ledgerNow,
  reservationEnd,
  scheduleOf,
} from "../../limiter/mod.ts";

const rate = { rps: 4, burst: 8 };
const now = 1_700_000_000_000;

/** Due times of every token of a schedule, in ms after `now`. */
function dueTimes(tatAfter: bigint, n: number): number[] {
  const { firstAt, spacingMs } = scheduleOf(tatAfter, n, rate);
  return Array.from({ length: n }, (_, k) => Math.max(0, firstAt + k * spacingMs - now));
}

Deno.test("scheduleOf() lets a fresh ledger's whole burst out at once, then one token per 1/rps", () => {
  // A fresh ledger: max(now) then + 12 tokens.
  const tat = ledgerNow(now) + 12n * emissionMicros(rate);
  assert.deepEqual(dueTimes(tat, 12), [0, 0, 0, 0, 0, 0, 0, 0, 250, 500, 750, 1000]);
});

Deno.test("reservationEnd() subtracts exactly the claims committed after this one", () => {
  const t = emissionMicros(rate);
  const tat = ledgerNow(now) + 20n * t;
  const claims = [
    { versionstamp: "00000000000000010000", n: 5 }, // before mine
    { versionstamp: "00000000000000020000", n: 10 }, // mine
    { versionstamp: "00000000000000030000", n: 3 }, // after
    { versionstamp: "00000000000000040000", n: 2 }, // after
  ];
  assert.deepEqual(reservationEnd(tat, "00000000000000020000", claims, rate), tat - 5n * t);
  assert.deepEqual(reservationEnd(tat, "00000000000000040000", claims, rate), tat);
});

Deno.test("emissionMicros() rounds 1/rps up, so the ledger errs slow", () => {
  assert.deepEqual(emissionMicros({ rps: 3, burst: 1 }), 333_334n);
  assert.deepEqual(emissionMicros({ rps: 0.5, burst: 1 }), 2_000_000n);
});

Deno.test("handBack() takes back the tail, exactly n·T, and nothing from a ledger in the past", () => {
  const t = emissionMicros(rate);
  assert.deepEqual(handBack(ledgerNow(now) + 10n * t, 4, now, rate), ledgerNow(now) + 6n * t);
  assert.deepEqual(handBack(ledgerNow(now) + 2n * t, 4, now, rate), ledgerNow(now) - 2n * t);
  assert.deepEqual(handBack(ledgerNow(now) - t, 4, now, rate), undefined);
  assert.deepEqual(handBack(ledgerNow(now) + t, 0, now, rate), undefined);
});
