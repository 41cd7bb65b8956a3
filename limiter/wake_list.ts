/**
 * The waiting core's second form (the first, a line that grants in turn,
 * is `waiting.ts`): requests waiting for something that ends at a known
 * time at the latest and may end sooner — a provider's pause (an admin
 * resumes, the probe answers), every key's rest (an admin enables one,
 * another instance's record says one is back), a held retry (the answer
 * it waits for arrives), a key's tokens falling due. Nobody is granted
 * anything: a wait ends, and the waiter looks again. So whoever changes
 * the thing calls {@linkcode WakeList.wake} instead of every waiter
 * polling it.
 *
 * @module
 */
import type { Clock, TimerHandle } from "../lib/mod.ts";

/** Requests waiting until a time or a change, whichever comes first (see the module doc). */
export class WakeList {
  #clock: Clock;
  #waiting = new Set<() => void>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** How many wait now. */
  get size(): number {
    return this.#waiting.size;
  }

  /**
   * Resolves true at `at` (never, when Infinity) or at the next
   * {@linkcode WakeList.wake}, whichever is first; false at once when
   * `signal` aborts first. Either way nothing of the wait is left behind.
   */
  wait(at: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      let timer: TimerHandle | undefined;
      const end = (woken: boolean) => {
        this.#waiting.delete(wake);
        if (timer !== undefined) this.#clock.clearTimeout(timer);
        signal?.removeEventListener("abort", aborted);
        resolve(woken);
      };
      const wake = () => end(true);
      const aborted = () => end(false);
      if (at !== Infinity) {
        timer = this.#clock.setTimeout(wake, Math.max(0, at - this.#clock.now()));
      }
      signal?.addEventListener("abort", aborted, { once: true });
      this.#waiting.add(wake);
    });
  }

  /** Ends every wait now (the thing waited for changed: each waiter looks again). */
  wake(): void {
    if (this.#waiting.size === 0) return;
    for (const wake of [...this.#waiting]) wake();
  }
}
