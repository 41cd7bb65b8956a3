import type { Clock, TimerHandle } from "./clock.ts";

interface Entry {
  at: number;
  fn: () => void;
}

/**
 * Many timeouts on one timer: every in-flight request arms a first-byte
 * timeout, nearly all cancelled a few milliseconds later, and every queued
 * request a deadline. A set entry costs far less time and memory than a
 * runtime timer. Timeouts fire up to `resolutionMs` late, never early.
 */
export class TimeoutSweeper {
  #clock: Clock;
  #resolutionMs: number;
  #entries = new Set<Entry>();
  #timer: TimerHandle | undefined;

  /** @param resolutionMs How late a timeout may fire, in ms (> 0). */
  constructor(clock: Clock, resolutionMs: number) {
    if (!(resolutionMs > 0)) {
      throw new RangeError(`resolutionMs must be > 0 (got ${resolutionMs})`);
    }
    this.#clock = clock;
    this.#resolutionMs = resolutionMs;
  }

  /** Calls `fn` once `ms` have passed, unless the returned function is called first. */
  add(ms: number, fn: () => void): () => void {
    return this.at(this.#clock.now() + ms, fn);
  }

  /** Calls `fn` once the clock reaches `at` (epoch ms), unless the returned function is called first. */
  at(at: number, fn: () => void): () => void {
    const entry: Entry = { at, fn };
    this.#entries.add(entry);
    if (this.#timer === undefined) this.#arm();
    return () => {
      this.#entries.delete(entry);
    };
  }

  /** Timeouts pending. */
  get size(): number {
    return this.#entries.size;
  }

  #arm(): void {
    this.#timer = this.#clock.setTimeout(() => this.#sweep(), this.#resolutionMs);
  }

  #sweep(): void {
    this.#timer = undefined;
    const now = this.#clock.now();
    for (const entry of this.#entries) {
      if (entry.at > now) continue;
      this.#entries.delete(entry);
      entry.fn();
    }
    if (this.#entries.size > 0) this.#arm();
  }
}
