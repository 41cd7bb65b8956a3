import {
  type CapacityLevels,
  type CapacityStore,
  MemoryCapacityStore,
  type ServiceLimits,
  SlotContention,
  type TokenLease,
} from "./capacity_store.ts";
import type { Clock } from "../lib/mod.ts";
import type { KvStatus } from "../kv/mod.ts";

/** Options for {@linkcode DegradingStore}. */
export interface DegradingStoreOptions {
  clock: Clock;
  /** Live instances last seen (or expected, before any was seen); the local share is the limit divided by it. */
  peers: () => number;
  /**
   * Whether KV answers. While it is down capacity comes from the local share
   * at once, without trying KV; it logs the outage, once, and probes for KV's return.
   */
  status: KvStatus;
}

/** Divides the limits by the instances last seen, never below one. */
export function localShare(limits: ServiceLimits, peers: number): ServiceLimits {
  const n = Math.max(1, peers);
  return {
    rps: limits.rps / n,
    burst: Math.max(1, Math.floor(limits.burst / n)),
    maxConn: Math.max(1, Math.floor(limits.maxConn / n)),
  };
}

/**
 * The shared store with a safety net: while KV is down (its status says so,
 * or a call fails), capacity comes from a local bucket holding this
 * instance's share of the limits (never unlimited). The first call after
 * KV is back goes to the shared store again; slot counts are absolute, so
 * that call reports the true count.
 */
export class DegradingStore implements CapacityStore {
  readonly shared = true;
  #primary: CapacityStore;
  #limits: ServiceLimits;
  #options: DegradingStoreOptions;
  #fallback: MemoryCapacityStore | undefined;

  constructor(primary: CapacityStore, limits: ServiceLimits, options: DegradingStoreOptions) {
    this.#primary = primary;
    this.#limits = limits;
    this.#options = options;
  }

  /** True while limits come from the local share. */
  get degraded(): boolean {
    return this.#fallback !== undefined;
  }

  leaseTokens(want: number): Promise<TokenLease> {
    return this.#run((s) => s.leaseTokens(want));
  }

  returnTokens(n: number): Promise<void> {
    return this.#run((s) => s.returnTokens(n));
  }

  holdSlots(target: number): Promise<number> {
    return this.#run((s) => s.holdSlots(target));
  }

  /** The shared store's levels; none while degraded (KV is what holds them). */
  levels(): Promise<CapacityLevels | null> {
    if (this.degraded || !this.#primary.levels) return Promise.resolve(null);
    return this.#primary.levels();
  }

  leaveAtMost(available: number): Promise<void> {
    return this.#run((s) => s.leaveAtMost?.(available) ?? Promise.resolve());
  }

  async #run<T>(op: (s: CapacityStore) => Promise<T>): Promise<T> {
    if (!this.#options.status.up) return op(this.#local());
    try {
      const result = await op(this.#primary);
      this.#fallback = undefined;
      return result;
    } catch (e) {
      // KV answered (others' writes won every turn): the caller tries the shared store again.
      if (e instanceof SlotContention) throw e;
      return op(this.#local());
    }
  }

  /** The local share, made at the first need of an outage and kept for it. */
  #local(): MemoryCapacityStore {
    this.#fallback ??= new MemoryCapacityStore(
      localShare(this.#limits, this.#options.peers()),
      this.#options.clock,
    );
    return this.#fallback;
  }
}
