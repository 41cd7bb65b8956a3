/**
 * Memory bounded before admission: the request bodies this instance holds
 * (read whole, so a retry can send them again, and kept while a request
 * waits in a queue) are counted against one budget of bytes. A body that
 * does not fit is refused (429 `gateway_busy`) before it is read, rather
 * than letting queued bodies grow until the isolate runs out of memory.
 *
 * @module
 */

/** Bytes of request bodies one instance holds at most, by default: sized for Deno Deploy's 768 MB isolate. */
export const DEFAULT_BODY_BUDGET_BYTES = 192 * 1024 * 1024;

/** The bytes of request bodies held now, against a limit. */
export class BodyBudget {
  /** Bytes held now. */
  held = 0;
  readonly limit: number;

  constructor(limit: number) {
    if (!(limit > 0)) throw new RangeError(`bodyBudgetBytes must be > 0 (got ${limit})`);
    this.limit = limit;
  }

  /** Takes `n` bytes if they fit; false (nothing taken) when they do not. */
  take(n: number): boolean {
    if (this.held + n > this.limit) return false;
    this.held += n;
    return true;
  }

  /** Gives back `n` bytes taken before. */
  give(n: number): void {
    this.held = Math.max(0, this.held - n);
  }
}
