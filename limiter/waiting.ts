/**
 * The one way a request waits in kvgate — for an in-flight slot, a token,
 * or its team's turn: in a line, until it is granted, its deadline passes
 * (on a {@linkcode TimeoutSweeper}, so a waiting request holds no runtime
 * timer of its own), its client aborts, or the line refuses it (full,
 * closing). Every end settles the waiter exactly once, and a refusal says
 * why with a Retry-After (`admission.ts`). The service limiter and the
 * teams' fair gate both wait through here.
 *
 * @module
 */
import type { Admission, Refusal, RefusalReason, WaitOptions } from "./admission.ts";
import type { TimeoutSweeper } from "../lib/timeout_sweeper.ts";
import type { AdmissionQueue, Waiter } from "./wait_queue.ts";

/** Where a waiter sits: it is put in, and told when the waiter leaves early. */
export type Line = Pick<AdmissionQueue, "push" | "left">;

/** The grant every waiter gets (one frozen object: a grant allocates nothing). */
export const GRANTED: Admission = Object.freeze({ ok: true });

/**
 * Puts a request in `line` until it is granted (by {@linkcode grantNext} or
 * {@linkcode grant}) or refused: `queue_timeout` at `options.deadline`,
 * `aborted` when its signal aborts, or what `waiter.refuse` is called with.
 * The waiter is in the line when this returns, so the caller may pump at once.
 */
export function waitIn(
  line: Line,
  options: WaitOptions,
  deadlines: TimeoutSweeper,
  refusal: (reason: RefusalReason) => Refusal,
  now: number,
): Promise<Admission> {
  return new Promise<Admission>((resolve) => {
    const waiter: Waiter = {
      resolve,
      signal: options.signal,
      done: false,
      team: options.team,
      weight: options.weight,
      bulk: options.bulk,
      line: undefined,
      since: now,
      refuse: undefined,
    };
    const settle = (reason: RefusalReason) => {
      if (waiter.done) return;
      finish(waiter);
      line.left(waiter);
      resolve(refusal(reason));
    };
    waiter.refuse = settle;
    waiter.cancelDeadline = deadlines.at(options.deadline, () => settle("queue_timeout"));
    if (options.signal) {
      waiter.onAbort = () => settle("aborted");
      options.signal.addEventListener("abort", waiter.onAbort, { once: true });
    }
    line.push(waiter, options.priority);
  });
}

/**
 * How long `ahead` requests take to leave a line let out at `perSecond`:
 * what a request arriving behind them expects to wait, in ms.
 */
export function drainMs(ahead: number, perSecond: number): number {
  return Math.ceil((ahead / Math.max(perSecond, 0.01)) * 1000);
}

/** The Retry-After of a refusal behind `ahead` requests: their drain, a second at least. */
export function retryAfterMs(ahead: number, perSecond: number): number {
  return Math.max(1000, drainMs(ahead, perSecond));
}

/** Ends a waiter's wait: its deadline and abort listener go. */
export function finish(w: Waiter): void {
  w.done = true;
  w.cancelDeadline?.();
  if (w.onAbort) w.signal?.removeEventListener("abort", w.onAbort);
}

/** Settles a waiter taken out of its line with `answer` (a grant by default). */
export function grant(w: Waiter, answer: Admission = GRANTED): void {
  finish(w);
  w.resolve(answer);
}

/** Grants the next waiter of `queue`, if any, and returns it (`since` says how long it waited). */
export function grantNext(queue: AdmissionQueue): Waiter | undefined {
  const w = queue.shift();
  if (!w) return undefined;
  queue.live--;
  grant(w);
  return w;
}

/** Refuses every waiter of `queue` with `refusal` (shutting down). */
export function refuseAll(queue: AdmissionQueue, refusal: Refusal): void {
  for (let w = queue.shift(); w; w = queue.shift()) {
    queue.live--;
    grant(w, refusal);
  }
}
