/**
 * How full a shared capacity is now, read from KV for the status: the
 * tokens free in its bucket and the in-flight slots every instance holds.
 * The store that writes these records is the one that knows how to read
 * them (`kv_capacity_store.ts`); the status asks it, never decoding them.
 *
 * @module
 */
import {
  bucketKey,
  kvCall,
  type KvCallOptions,
  type KvGetMany,
  type LimitScope,
  slotsKey,
  tokenLedgerKey,
} from "../kv/mod.ts";
import { type BucketState, fullBucket, refill } from "./bucket.ts";
import type { CapacityLevels, ServiceLimits } from "./capacity_store.ts";
import { emissionMicros, ledgerNow } from "./gcra.ts";

/** One instance's claim on a service's in-flight slots; judged by its time stamp. */
export interface SlotHolder {
  n: number;
  expiresAt: number;
}

/** The value at `slotsKey(scope)`: who holds how many slots, until when. */
export interface SlotsState {
  holders: Record<string, SlotHolder>;
}

/**
 * Reads a scope's levels in one eventual snapshot (the page is a second
 * old anyway, and the read stays in-region): `tokens` says whether the
 * bucket is the GCRA ledger or the compare-and-set bucket.
 */
export async function readLevels(
  kv: KvGetMany,
  scope: LimitScope,
  limits: ServiceLimits,
  tokens: "ledger" | "compare_and_set",
  now: number,
  call: KvCallOptions,
): Promise<CapacityLevels> {
  const bucket = tokens === "ledger" ? tokenLedgerKey(scope) : bucketKey(scope);
  const [stock, slots] = await kvCall(
    () =>
      kv.getMany<[Deno.KvU64 | BucketState, SlotsState]>([bucket, slotsKey(scope)], {
        consistency: "eventual",
      }),
    call,
  );
  let level: number;
  if (tokens === "ledger") {
    const tat = stock.value as Deno.KvU64 | null;
    const behind = tat === null ? 0 : Number(tat.value - ledgerNow(now));
    level = limits.burst - Math.max(0, behind) / Number(emissionMicros(limits));
  } else {
    const state = stock.value as BucketState | null;
    level = refill(state ?? fullBucket(now, limits), now, limits).tokens;
  }
  let inFlight = 0;
  for (const h of Object.values(slots.value?.holders ?? {})) {
    if (h.expiresAt > now) inFlight += h.n;
  }
  return { bucketTokens: Math.max(0, Math.min(limits.burst, Math.floor(level))), inFlight };
}
