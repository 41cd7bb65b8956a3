/**
 * The walk both shared day counts (a team's daily budget, a key's `rpd`)
 * must pass with two instances on one KV, on the fake clock.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type FakeClock, passes, settle } from "./fake_clock.ts";
import type { InProcess } from "./in_process.ts";

/** A refusal as the client sees it. */
export interface Refused {
  status: number;
  body: { error?: { code?: string } };
  retryAfter: number;
}

/**
 * Instance `a` sends one request, reserving a part of the day's `budget`
 * (starting at `start`, resetting at the next UTC midnight); `b` then
 * sends until refused, before the day is used up, and is told to come back
 * within 4 s; once `a`'s unused part goes back, `b` sends every request of
 * the day but `a`'s one; once the day stays spent, `b` is refused until the
 * reset. Little time passes while requests are served (the clock moves a
 * millisecond at a time). Resolves to `b`'s first and last refusals.
 */
export async function dayAcrossInstances(
  clock: FakeClock,
  [a, b]: [InProcess, InProcess],
  request: () => Request,
  budget: number,
): Promise<{ first: Refused; last: Refused }> {
  const send = async (g: InProcess): Promise<Refused> => {
    const res = await settle(clock, g.gateway.handler(request()), 1);
    const text = await res.text();
    const body = res.status === 200 ? {} : JSON.parse(text);
    return { status: res.status, body, retryAfter: Number(res.headers.get("retry-after")) };
  };
  const drain = async () => {
    for (let served = 0; served <= budget; served++) {
      const r = await send(b);
      if (r.status !== 200) return { served, refused: r };
    }
    throw new Error(`more than the day's ${budget} requests served`);
  };
  assert.equal((await send(a)).status, 200, "a reserves a part of the day and sends one");
  const first = await drain();
  assert.ok(first.served < budget - 1, `b cannot send what a holds (${first.served})`);
  const soon = first.refused.retryAfter;
  assert.ok(soon >= 1 && soon <= 4, `just seen spent: come back soon (${soon} s)`);
  await passes(clock, 5000);
  const second = await drain();
  assert.equal(first.served + second.served, budget - 1, "every request of the day but a's one");
  assert.equal(a.calls.length + b.calls.length, budget);
  await passes(clock, 5000);
  const last = await send(b);
  assert.equal(last.status, 429);
  const reset = Math.ceil(clock.now() / 86_400_000) * 86_400_000;
  const untilReset = (reset - clock.now()) / 1000;
  assert.ok(Math.abs(last.retryAfter - untilReset) <= 2, `${last.retryAfter} s`);
  assert.equal(a.calls.length + b.calls.length, budget, "nothing past the day's budget");
  return { first: first.refused, last };
}
