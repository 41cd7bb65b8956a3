import {
  type CapacityStore,
  MemoryCapacityStore,
  type ServiceLimits,
  type TokenLease,
} from "./capacity_store.ts";
import type { Clock } from "../clock/mod.ts";

/** Options for {@linkcode DegradingStore}. */
export interface DegradingStoreOptions {
  clock: Clock;
  /** Live instances last seen; the local share is the limit divided by it. */
  peers: () => number;
  /** How often, while degraded, the shared store is tried again, in ms. Default 1000. */
  probeMs?: number;
  /** Told once when degraded mode starts and once when it ends. */
  log?: (event: "kv_degraded" | "kv_recovered", detail: Record<string, unknown>) => void;
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
 * The shared store with a safety net: when KV keeps failing after its
 * bounded retries (or fails outright), capacity comes from a local bucket holding this
 * instance's share of the limits (never unlimited), until a probe finds KV
 * answering again.
 */
export class DegradingStore implements CapacityStore {
  readonly shared = true;
  #primary: CapacityStore;
  #limits: ServiceLimits;
  #options: DegradingStoreOptions;
  #fallback: MemoryCapacityStore | undefined;
  #lastProbe = 0;

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
    // Absolute figures: after recovery the first write reports the true count.
    return this.#run((s) => s.holdSlots(target));
  }

  async #run<T>(op: (s: CapacityStore) => Promise<T>): Promise<T> {
    const now = this.#options.clock.now();
    if (this.#fallback && now - this.#lastProbe < (this.#options.probeMs ?? 1000)) {
      return op(this.#fallback);
    }
    try {
      const result = await op(this.#primary);
      if (this.#fallback) {
        this.#fallback = undefined;
        this.#options.log?.("kv_recovered", {});
      }
      return result;
    } catch (e) {
      this.#lastProbe = now;
      if (!this.#fallback) {
        const share = localShare(this.#limits, this.#options.peers());
        this.#fallback = new MemoryCapacityStore(share, this.#options.clock);
        this.#options.log?.("kv_degraded", { error: (e as Error).message, share });
      }
      return op(this.#fallback);
    }
  }
}
