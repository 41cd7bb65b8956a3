/**
 * The KV operations an adapter may be given. Each adapter's constructor
 * names the ports it uses (a `Pick` of `Deno.Kv`), so what a class can do
 * to the database is read from its signature, and a test may hand it only
 * those. A whole `Deno.Kv` fits every port.
 *
 * @module
 */

/** What the one compare-and-set loop (`casUpdate`) needs: reads and an atomic commit. */
export type KvCas = Pick<Deno.Kv, "get" | "getMany" | "atomic">;

/** Range reads (`list`): every record under a prefix. */
export type KvList = Pick<Deno.Kv, "list">;

/** Blind writes of one record: `set` and `delete`. */
export type KvWrite = Pick<Deno.Kv, "set" | "delete">;

/** Atomic commits without a read (sums, several writes at once). */
export type KvCommit = Pick<Deno.Kv, "atomic">;

/** Reads of several records in one snapshot. */
export type KvGetMany = Pick<Deno.Kv, "getMany">;

/** A watch on known keys. */
export type KvWatchPort = Pick<Deno.Kv, "watch">;

/**
 * Counts written behind by `sum` in another's commit, so that several
 * write-behind counters cost one KV call a flush: the host puts each
 * source's counts into its atomic operation and tells it how the commit went.
 */
export interface SumSource {
  /**
   * Puts the pending counts into `op`; the function returned is told whether
   * they were written. Undefined when there was nothing to put.
   */
  sumInto(op: Deno.AtomicOperation): ((written: boolean) => void) | undefined;
}
