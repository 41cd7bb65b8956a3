import { bucketKey, kvCall, type KvCallOptions, slotsKey } from "../kv/mod.ts";
import {
  type BucketState,
  fullBucket,
  msUntilToken,
  refill,
  returnTokens,
  takeTokens,
} from "./bucket.ts";
import type { CapacityStore, ServiceLimits, TokenLease } from "./capacity_store.ts";
import type { Clock } from "./clock.ts";

/** One instance's claim on a service's in-flight slots; judged by its time stamp. */
export interface SlotHolder {
  n: number;
  expiresAt: number;
}

/** The value at `slotsKey(service)`. */
export interface SlotsState {
  holders: Record<string, SlotHolder>;
}

/** Options for {@linkcode KvCapacityStore}. */
export interface KvCapacityStoreOptions {
  /** This instance's id; its slot claim is filed under it. */
  instanceId: string;
  clock: Clock;
  /** How long a slot claim counts without renewal, in ms. Default 15000. */
  slotTtlMs?: number;
  /** Timeout and retries of each KV call. */
  call?: KvCallOptions;
  /** Compare-and-set attempts before a lease gives up for now. Default 8. */
  maxConflicts?: number;
}

/** About 50 ms of tokens at the service rate, at least one: what a waiting instance waits for before asking again. */
function refillStep(limits: ServiceLimits, want: number): number {
  return Math.max(1, Math.min(want, Math.ceil(limits.rps * 0.05)));
}

/**
 * Capacity shared by every instance through Deno KV. Each change is a
 * compare-and-set on the record's versionstamp: read, compute with the pure
 * bucket functions, commit with `check`, and on conflict read again.
 */
export class KvCapacityStore implements CapacityStore {
  readonly shared = true;
  #kv: Deno.Kv;
  #service: string;
  #limits: ServiceLimits;
  #me: string;
  #clock: Clock;
  #ttl: number;
  #call: KvCallOptions;
  #maxConflicts: number;
  #held = 0;

  constructor(
    kv: Deno.Kv,
    service: string,
    limits: ServiceLimits,
    options: KvCapacityStoreOptions,
  ) {
    this.#kv = kv;
    this.#service = service;
    this.#limits = limits;
    this.#me = options.instanceId;
    this.#clock = options.clock;
    this.#ttl = options.slotTtlMs ?? 15_000;
    this.#call = options.call ?? {};
    this.#maxConflicts = options.maxConflicts ?? 8;
  }

  async leaseTokens(want: number): Promise<TokenLease> {
    const key = bucketKey(this.#service);
    for (let i = 0; i < this.#maxConflicts; i++) {
      const entry = await kvCall(() => this.#kv.get<BucketState>(key), this.#call);
      const now = this.#clock.now();
      const state = refill(entry.value ?? fullBucket(now, this.#limits), now, this.#limits);
      const step = refillStep(this.#limits, want);
      if (state.tokens < 1) {
        // Wait for a few tokens rather than one, so racing instances do not
        // spend a KV round trip per token.
        const missing = step - state.tokens;
        const retryAfterMs = Math.max(
          msUntilToken(state, this.#limits),
          Math.ceil((missing / this.#limits.rps) * 1000),
        );
        return { granted: 0, retryAfterMs };
      }
      const { state: next, granted } = takeTokens(state, want);
      const result = await kvCall(
        () => this.#kv.atomic().check(entry).set(key, next).commit(),
        this.#call,
      );
      if (result.ok) return { granted, retryAfterMs: 0 };
    }
    return { granted: 0, retryAfterMs: 5 + Math.random() * 20 };
  }

  async returnTokens(n: number): Promise<void> {
    if (n <= 0) return;
    const key = bucketKey(this.#service);
    for (let i = 0; i < this.#maxConflicts; i++) {
      const entry = await kvCall(() => this.#kv.get<BucketState>(key), this.#call);
      if (!entry.value) return;
      const now = this.#clock.now();
      const next = returnTokens(refill(entry.value, now, this.#limits), n, this.#limits);
      const result = await kvCall(
        () => this.#kv.atomic().check(entry).set(key, next).commit(),
        this.#call,
      );
      if (result.ok) return;
    }
  }

  async holdSlots(target: number): Promise<number> {
    const key = slotsKey(this.#service);
    for (let i = 0; i < this.#maxConflicts; i++) {
      const entry = await kvCall(() => this.#kv.get<SlotsState>(key), this.#call);
      const now = this.#clock.now();
      const holders: Record<string, SlotHolder> = {};
      let others = 0;
      for (const [id, h] of Object.entries(entry.value?.holders ?? {})) {
        if (h.expiresAt <= now || id === this.#me) continue;
        holders[id] = h;
        others += h.n;
      }
      const mine = entry.value?.holders[this.#me];
      const current = mine && mine.expiresAt > now ? mine.n : 0;
      const room = Math.max(0, this.#limits.maxConn - others);
      const granted = target <= current ? target : Math.min(target, Math.max(current, room));
      // Nothing to gain and the claim is fresh: skip the write (a waiting poll).
      if (granted === current && target > current && mine && mine.expiresAt - now > this.#ttl / 2) {
        this.#held = current;
        return current;
      }
      if (granted > 0) holders[this.#me] = { n: granted, expiresAt: now + this.#ttl };
      const result = await kvCall(
        () =>
          this.#kv.atomic().check(entry).set(key, { holders } satisfies SlotsState, {
            expireIn: this.#ttl * 4,
          }).commit(),
        this.#call,
      );
      if (result.ok) {
        this.#held = granted;
        return granted;
      }
    }
    // Under heavy contention keep what we held; lowering is retried on the next release.
    return Math.min(this.#held, target);
  }
}
