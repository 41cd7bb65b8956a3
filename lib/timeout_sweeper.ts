import type { Clock, TimerHandle } from "./clock.ts";

interface Entry {
  at: number;
  fn: () => void;
  /** Its place in the sweeper's list; -1 once fired or cancelled. */
  index: number;
}

/**
 * Many timeouts on one timer: every in-flight request arms a first-byte
 * timeout, nearly all cancelled a few milliseconds later, and every queued
 * request a deadline. A list entry costs far less time and memory than a
 * runtime timer. Timeouts fire up to `resolutionMs` late, never early.
 *
 * The entries are a plain array and a cancelled one is replaced by the
 * last: adding and cancelling allocate nothing beyond the entry, where a
 * `Set` churned by thousands of adds and deletes a second keeps growing
 * and rebuilding its hash table.
 */
export class TimeoutSweeper {
  #clock: Clock;
  #resolutionMs: number;
  #entries: Entry[] = [];
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
    const entry: Entry = { at, fn, index: this.#entries.length };
    this.#entries.push(entry);
    if (this.#timer === undefined) this.#arm();
    return () => this.#remove(entry);
  }

  /** How late a timeout may fire, in ms: the sweep's period. */
  get resolutionMs(): number {
    return this.#resolutionMs;
  }

  /** Timeouts pending. */
  get size(): number {
    return this.#entries.length;
  }

  #remove(entry: Entry): void {
    const i = entry.index;
    if (i < 0) return;
    entry.index = -1;
    const last = this.#entries.pop()!;
    if (last !== entry) {
      this.#entries[i] = last;
      last.index = i;
    }
    // Let a list that once held a crowd (a mass abort) go, rather than keep its capacity.
    if (this.#entries.length === 0) this.#entries = [];
  }

  #arm(): void {
    this.#timer = this.#clock.setTimeout(() => this.#sweep(), this.#resolutionMs);
  }

  #sweep(): void {
    this.#timer = undefined;
    const now = this.#clock.now();
    // Collected first: a callback may add or cancel timeouts.
    const due = this.#entries.filter((e) => e.at <= now);
    for (const entry of due) {
      if (entry.index < 0) continue; // cancelled by an earlier callback
      this.#remove(entry);
      entry.fn();
    }
    if (this.#entries.length > 0 && this.#timer === undefined) this.#arm();
  }
}
