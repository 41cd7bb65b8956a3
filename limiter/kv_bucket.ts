/**
 * A token bucket kept in one KV record and changed by compare-and-set: the
 * baseline token store of {@linkcode KvCapacityStore} (`tokens:
 * "compare_and_set"`), kept to measure the ledger against. The bucket's
 * arithmetic is `bucket.ts`'s; this is its storage.
 *
 * @module
 */
import type { Clock } from "../lib/mod.ts";
import { casUpdate, type KvCallOptions, type KvCas } from "../kv/mod.ts";
import {
  type BucketState,
  capTokens,
  fullBucket,
  msUntilToken,
  refill,
  returnTokens,
  takeTokens,
} from "./bucket.ts";
import type { ServiceLimits, TokenLease } from "./capacity_store.ts";

/** What a {@linkcode KvBucket} needs besides its record. */
export interface KvBucketOptions {
  clock: Clock;
  call: KvCallOptions;
  /** Compare-and-set attempts before a lease gives up for now. */
  attempts: number;
  random: () => number;
}

/** About 50 ms of tokens at the service rate, at least one: what a waiting instance waits for before asking again. */
function refillStep(limits: ServiceLimits, want: number): number {
  return Math.max(1, Math.min(want, Math.ceil(limits.rps * 0.05)));
}

/** One scope's bucket in KV (see the module doc). */
export class KvBucket {
  #kv: KvCas;
  #key: Deno.KvKey;
  #limits: ServiceLimits;
  #o: KvBucketOptions;

  constructor(kv: KvCas, key: Deno.KvKey, limits: ServiceLimits, options: KvBucketOptions) {
    this.#kv = kv;
    this.#key = key;
    this.#limits = limits;
    this.#o = options;
  }

  /** Takes up to `want` tokens, or says how long until a few are back. */
  async lease(want: number): Promise<TokenLease> {
    const update = await casUpdate<BucketState, TokenLease>(this.#kv, this.#key, (value) => {
      const now = this.#o.clock.now();
      const state = refill(value ?? fullBucket(now, this.#limits), now, this.#limits);
      if (state.tokens < 1) {
        // Wait for a few tokens rather than one, so racing instances do not
        // spend a KV round trip per token.
        const missing = refillStep(this.#limits, want) - state.tokens;
        const retryAfterMs = Math.max(
          msUntilToken(state, this.#limits),
          Math.ceil((missing / this.#limits.rps) * 1000),
        );
        return { done: { granted: 0, retryAfterMs } };
      }
      const { state: next, granted } = takeTokens(state, want);
      return { write: next, result: { granted, retryAfterMs: 0 } };
    }, { attempts: this.#o.attempts, call: this.#o.call });
    return update.ok ? update.result : { granted: 0, retryAfterMs: 5 + this.#o.random() * 20 };
  }

  /** Puts `n` unspent tokens back (never above the burst). */
  async giveBack(n: number): Promise<void> {
    if (n <= 0) return;
    await casUpdate<BucketState, void>(this.#kv, this.#key, (value) => {
      if (!value) return { done: undefined };
      const next = returnTokens(refill(value, this.#o.clock.now(), this.#limits), n, this.#limits);
      return { write: next, result: undefined };
    }, { attempts: this.#o.attempts, call: this.#o.call });
  }

  /** The provider says only `available` are left: the bucket holds no more than that. */
  async leaveAtMost(available: number): Promise<void> {
    const now = this.#o.clock.now();
    await casUpdate<BucketState, void>(this.#kv, this.#key, (value) => {
      const state = refill(value ?? fullBucket(now, this.#limits), now, this.#limits);
      const next = capTokens(state, available);
      return next === state ? { done: undefined } : { write: next, result: undefined };
    }, { attempts: this.#o.attempts, call: this.#o.call });
  }
}
