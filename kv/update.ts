import type { KvCas, KvList } from "./ports.ts";
import { kvCall, type KvCallOptions } from "./call.ts";

const ONE = 1n;

/** What one turn of {@linkcode casUpdate} decides, from the value it read. */
export type CasStep<V, R> =
  /** Write `value` if nobody changed the record since the read; then the update gives `result`. */
  | { write: V; expireIn?: number; result: R }
  /** Delete the record if nobody changed it since the read; then the update gives `result`. */
  | { remove: true; result: R }
  /** Nothing to write: the update gives `result` as it is. */
  | { done: R };

/** Options for {@linkcode casUpdate}. */
export interface CasOptions {
  /** Read-decide-write turns before giving up (others kept changing the record). Default 8. */
  attempts?: number;
  /** Timeout, retries and status of each KV call. */
  call?: KvCallOptions;
  /**
   * More keys read in the same snapshot as `key` (one `getMany`), handed to
   * `step` as its second argument. Only `key` is checked at the commit.
   */
  alsoRead?: readonly Deno.KvKey[];
  /**
   * Counters bumped (a `sum`, which never conflicts) in the same commit as
   * the write: stamps that watchers hear change (kv/watch.ts).
   */
  bump?: readonly Deno.KvKey[];
}

/**
 * The one bounded compare-and-set loop: reads `key`, lets `step` decide from
 * its value, and commits the write only if the record is unchanged since the
 * read (a check on its versionstamp); on a conflict it reads again, at most
 * `attempts` times. Resolves `{ok: false}` when every turn met a conflict,
 * so that the caller decides what contention means for it.
 */
export async function casUpdate<V, R>(
  kv: KvCas,
  key: Deno.KvKey,
  step: (current: V | null, also: readonly Deno.KvEntryMaybe<unknown>[]) => CasStep<V, R>,
  options: CasOptions = {},
): Promise<{ ok: true; result: R } | { ok: false }> {
  const { attempts = 8, call = {}, alsoRead = [] } = options;
  for (let i = 0; i < attempts; i++) {
    const [entry, ...also] = alsoRead.length === 0
      ? [await kvCall(() => kv.get<V>(key), call)]
      : await kvCall(() => kv.getMany<unknown[]>([key, ...alsoRead]), call);
    const decided = step(entry.value as V | null, also);
    if ("done" in decided) return { ok: true, result: decided.done };
    const committed = await kvCall(() => {
      const op = kv.atomic().check(entry);
      for (const stamp of options.bump ?? []) op.sum(stamp, ONE);
      if ("remove" in decided) return op.delete(key).commit();
      const { write, expireIn } = decided;
      return op.set(key, write, expireIn === undefined ? {} : { expireIn }).commit();
    }, call);
    if (committed.ok) return { ok: true, result: decided.result };
  }
  return { ok: false };
}

/**
 * Every record under `prefix`, by the key part that follows it (a key id,
 * an instance id), read in one bounded, timed call.
 */
export function listByNextPart<V>(
  kv: KvList,
  prefix: Deno.KvKey,
  call: KvCallOptions = {},
): Promise<Map<string, V>> {
  return kvCall(async () => {
    const out = new Map<string, V>();
    for await (const e of kv.list<V>({ prefix })) out.set(String(e.key[prefix.length]), e.value);
    return out;
  }, call);
}

/** A `Deno.KvU64` count as a number; 0 when the record is absent. */
export function u64(entry: Deno.KvEntryMaybe<Deno.KvU64>): number {
  return entry.value === null ? 0 : Number(entry.value.value);
}
