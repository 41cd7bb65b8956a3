import assert from "node:assert/strict";
import { DemandMeter, leaseSize, tokensNeeded, TokenStock, WaitQueue } from "../../limiter/mod.ts";

Deno.test("TokenStock: tokens fall due in turn, and one not spent within leaseMs of falling due is stranded", () => {
  const stock = new TokenStock(1000);
  stock.add(3, 100, 50, 0); // due at 100, 150, 200
  assert.equal(stock.spend(99), false, "nothing is due before its time");
  assert.equal(stock.spend(100), true);
  assert.equal(stock.spend(100), false, "the next falls due 50 ms later");
  assert.equal(stock.firstDueAt(), 150);
  assert.equal(stock.lastDueAt(), 200);
  assert.equal(stock.lastingAt(1175), 1, "at 1175 the token due at 150 has expired");
  stock.expire(1175);
  assert.deepEqual([stock.count, stock.stranded], [1, 1]);
  assert.equal(stock.spend(1175), true);
  assert.equal(stock.count, 0);
  stock.add(5, 2000, 0, 2000);
  assert.equal(stock.clear(), 5);
  assert.equal(stock.firstDueAt(), undefined);
});

Deno.test("TokenStock: a cost of many tokens is spent whole from what is due, or not at all; a giving-up request takes back its undue batch", () => {
  const stock = new TokenStock(1000);
  const early = stock.add(30, 100, 0, 0); // whole at 100
  const late = stock.add(50, 400, 0, 0); // whole at 400
  assert.equal(stock.allDueAt(), 400);
  assert.equal(stock.spendDue(31, 399), false, "only 30 are due before 400: none is spent");
  assert.equal(stock.count, 80);
  assert.equal(stock.spendDue(20, 399), true);
  assert.equal(stock.withdraw(late, 399), 50, "the late batch is not due: all of it goes back");
  assert.equal(stock.withdraw(early, 399), 0, "what is due stays for the next request");
  assert.deepEqual([stock.count, stock.allDueAt()], [10, 100]);
  assert.equal(stock.spendDue(10, 400), true, "spent across what is left");
  assert.deepEqual([stock.count, stock.allDueAt()], [0, -Infinity]);
  stock.add(5, 500, 0, 500);
  stock.expire(1500);
  assert.deepEqual([stock.count, stock.stranded], [0, 5], "unspent leaseMs after falling due");
});

Deno.test("leaseSize: what waits, or half a lease lifetime of demand, capped at a share of the limit", () => {
  const inputs = {
    limits: { rps: 100, burst: 20, maxConn: 10 },
    leaseMs: 2000,
    peers: 4,
    leaseRttMs: 10,
  };
  // cap = max(1, ceil((20 + 100·2) / 16) = 14, ceil(100·2·10/1000) = 2) = 14; never above max(cap, burst) = 20.
  assert.equal(leaseSize(1, 0, inputs), 1);
  assert.equal(leaseSize(0, 10, inputs), 10, "half of 2 s of 10 tokens/s");
  assert.equal(leaseSize(0, 1000, inputs), 14, "demand alone never asks past the cap");
  assert.equal(leaseSize(50, 0, inputs), 20, "what waits, up to burst");
  assert.equal(
    leaseSize(0, 1000, { ...inputs, peers: 1 }),
    55,
    "one instance: its cap is (20 + 200) / 4",
  );
  assert.equal(tokensNeeded(3, 5, 2), 0, "the stock covers the waiters");
  assert.equal(tokensNeeded(10, 2, 4), 8);
  assert.equal(tokensNeeded(3, 2, 6), 3, "two round trips of the rate, up to the waiters");
});

Deno.test("DemandMeter: this second's count, blended with the last second's as it ages", () => {
  const d = new DemandMeter();
  d.count(10, 1000);
  assert.equal(d.rate(1000), 10);
  d.count(4, 2000); // a new window: the last second had 10
  assert.equal(d.rate(2500), 10 * 0.5 + 4);
  assert.equal(d.rate(3000), 4);
  d.count(1, 5000); // two seconds quiet: the old count no longer counts
  assert.equal(d.rate(5000), 1);
});

Deno.test("WaitQueue: first in first out, a retry goes to the front, and settled waiters are skipped", () => {
  const q = new WaitQueue();
  const w = (name: string) => ({ resolve: () => {}, done: false, name });
  const [a, b, c] = [w("a"), w("b"), w("c")];
  q.push(a);
  q.push(b);
  q.push(c, true);
  b.done = true;
  q.left();
  assert.equal(q.live, 2);
  assert.equal(q.shift(), c);
  assert.equal(q.shift(), a);
  assert.equal(q.shift(), undefined);
});
