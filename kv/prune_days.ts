import type { KvCommit, KvList } from "./ports.ts";
import { kvCall, type KvCallOptions } from "./call.ts";
import { DAY_RECORDS } from "./keys.ts";

/** How long day records are kept: the status page shows the last week. */
export const KEEP_DAYS = 8;

/** Records deleted at most per prefix and call, so one commit stays small. */
const PRUNE_BATCH = 200;

/**
 * Deletes day records (team budgets' and keys' per-day counts, see
 * {@linkcode DAY_RECORDS}) older than {@linkcode KEEP_DAYS}: summed
 * records cannot carry an expiry, so this is how they go. At most 200 per
 * prefix and call; the next call takes the rest. Resolves to how many went.
 */
export async function pruneOldDays(
  kv: KvCommit & KvList,
  now: number,
  call: KvCallOptions = {},
): Promise<number> {
  const oldest = new Date(now - KEEP_DAYS * 86_400_000).toISOString().slice(0, 10);
  let pruned = 0;
  for (const { prefix, dayAt } of DAY_RECORDS) {
    const old = await kvCall(async () => {
      const keys: Deno.KvKey[] = [];
      for await (const e of kv.list({ prefix }, { limit: 5000, consistency: "eventual" })) {
        if (String(e.key[dayAt]) < oldest) keys.push(e.key);
        if (keys.length >= PRUNE_BATCH) break;
      }
      return keys;
    }, call);
    if (old.length === 0) continue;
    await kvCall(() => {
      const op = kv.atomic();
      for (const key of old) op.delete(key);
      return op.commit();
    }, call);
    pruned += old.length;
  }
  return pruned;
}
