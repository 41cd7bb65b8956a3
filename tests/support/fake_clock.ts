import type { Clock, TimerHandle } from "../../limiter/mod.ts";

/** A clock that moves only when told; timers fire in time order as it passes them. */
export class FakeClock implements Clock {
  #now: number;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle as unknown as number);
  }

  /** Pending timers. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing due timers in order and letting promises settle between them. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    do await flush(); while (this.#fireNext(end));
    this.#now = end;
    await flush();
  }

  /** As {@linkcode FakeClock.advance}, synchronously: for code that awaits nothing. */
  advanceSync(ms: number): void {
    const end = this.#now + ms;
    while (this.#fireNext(end));
    this.#now = end;
  }

  /** Fires the earliest timer due by `end`; false when there is none. */
  #fireNext(end: number): boolean {
    let due: [number, { at: number; fn: () => void }] | undefined;
    for (const entry of this.#timers) {
      if (entry[1].at <= end && (!due || entry[1].at < due[1].at)) due = entry;
    }
    if (!due) return false;
    this.#timers.delete(due[0]);
    this.#now = Math.max(this.#now, due[1].at);
    due[1].fn();
    return true;
  }
}

/**
 * Resolves with `promise`, moving `clock` on by `stepMs` while it is
 * pending (at most `maxMs` in all): for work that waits on the clock's timers.
 */
export async function settle<T>(
  clock: FakeClock,
  promise: Promise<T>,
  stepMs = 100,
  maxMs = 60_000,
): Promise<T> {
  let done = false;
  const tracked = promise.finally(() => done = true);
  for (let moved = 0; !done && moved < maxMs; moved += stepMs) await clock.advance(stepMs);
  return await tracked;
}

/**
 * Moves `clock` on by `ms` in steps of `stepMs`: the work a timer starts
 * (KV calls in memory, which take a few macrotasks each) finishes, and arms
 * the timers that follow it, before time moves past them.
 */
export async function passes(clock: FakeClock, ms: number, stepMs = 100): Promise<void> {
  for (let moved = 0; moved < ms; moved += stepMs) {
    await clock.advance(Math.min(stepMs, ms - moved));
  }
}

/** Lets every queued promise callback run (KV in memory settles within a few macrotasks). */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
}
