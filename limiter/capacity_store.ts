import {
  type BucketRate,
  capTokens,
  fullBucket,
  msUntilToken,
  refill,
  returnTokens,
  takeTokens,
} from "./bucket.ts";
import type { BucketState } from "./bucket.ts";
import type { Clock } from "../lib/mod.ts";

/** The limits of one service as the limiter sees them. */
export interface ServiceLimits extends BucketRate {
  maxConn: number;
}

/** Result of asking a store for tokens. */
export interface TokenLease {
  granted: number;
  /** When nothing was granted: ms until the store expects a token. */
  retryAfterMs: number;
  /**
   * Epoch ms from which the first granted token may be spent. Default: at
   * once. A ledger store grants tokens that fall due later.
   */
  firstAt?: number;
  /** Ms between one granted token falling due and the next. Default 0 (all at once). */
  spacingMs?: number;
}

/**
 * A slot write that met other instances' writes at every turn of its
 * compare-and-set: KV answers, but the claim was neither changed nor
 * renewed. Not an outage: the shared store stays in use.
 */
export class SlotContention extends Error {
  constructor() {
    super("the slot record kept changing under this write");
    this.name = "SlotContention";
  }
}

/**
 * Where a service's capacity lives. The in-memory store limits one
 * instance; the KV store limits the deployment. The limiter in front of
 * either is the same, so the request pipeline never knows which it has.
 */
export interface CapacityStore {
  /** Takes up to `want` tokens. */
  leaseTokens(want: number): Promise<TokenLease>;
  /** Hands back `n` unused tokens (shutdown, expiry of a local stock). */
  returnTokens(n: number): Promise<void>;
  /**
   * Asks to hold `target` in-flight slots in all (an absolute figure, so a
   * repeat or a late write is harmless). Returns how many are now held:
   * `target` when lowering, up to `target` when raising. Rejects when
   * nothing was written (KV down, or {@linkcode SlotContention}): the claim
   * was not renewed.
   */
  holdSlots(target: number): Promise<number>;
  /** True when the store's tokens are shared with other instances (worth batching). */
  readonly shared: boolean;
  /**
   * Takes up to `want` tokens at once, without waiting, where the store can
   * (memory): the limiter then spends no promise or timer on a free token.
   */
  takeNow?(want: number): number;
  /**
   * Someone who counts the same capacity (a provider, in its rate-limit
   * headers) says only `available` tokens are left now: from here on the
   * store lets out no more than that, then refills at its rate. Never raises.
   */
  leaveAtMost?(available: number): Promise<void>;
  /**
   * How full the shared capacity is now, for the status; null when there
   * is none to tell (a store in memory, KV unreachable).
   */
  levels?(): Promise<CapacityLevels | null>;
}

/** A shared capacity's levels: tokens free in its bucket, in-flight slots held by all instances. */
export interface CapacityLevels {
  bucketTokens: number;
  inFlight: number;
}

/** Capacity kept in this instance's memory: limits hold for this instance only. */
export class MemoryCapacityStore implements CapacityStore {
  readonly shared = false;
  #bucket: BucketState;
  #held = 0;
  #limits: ServiceLimits;
  #clock: Clock;

  constructor(limits: ServiceLimits, clock: Clock) {
    this.#limits = limits;
    this.#clock = clock;
    this.#bucket = fullBucket(clock.now(), limits);
  }

  leaseTokens(want: number): Promise<TokenLease> {
    return Promise.resolve(this.#take(want));
  }

  takeNow(want: number): number {
    return this.#take(want).granted;
  }

  #take(want: number): TokenLease {
    const refilled = refill(this.#bucket, this.#clock.now(), this.#limits);
    const { state, granted } = takeTokens(refilled, want);
    this.#bucket = state;
    return { granted, retryAfterMs: granted > 0 ? 0 : msUntilToken(state, this.#limits) };
  }

  returnTokens(n: number): Promise<void> {
    this.#bucket = returnTokens(
      refill(this.#bucket, this.#clock.now(), this.#limits),
      n,
      this.#limits,
    );
    return Promise.resolve();
  }

  leaveAtMost(available: number): Promise<void> {
    this.#bucket = capTokens(refill(this.#bucket, this.#clock.now(), this.#limits), available);
    return Promise.resolve();
  }

  holdSlots(target: number): Promise<number> {
    this.#held = Math.max(0, Math.min(target, this.#limits.maxConn));
    return Promise.resolve(this.#held);
  }
}

/** The side of a wait line that hands out slots or tokens sees: how many wait, and grant the next. */
export interface Waiters {
  waiting(): number;
  /** Grants the next waiter what was just taken for it (a slot counted in use, a token spent). */
  grant(): void;
}

/** What the slots and the tokens one instance holds of a scope are both made of. */
export interface HeldParts {
  store: CapacityStore;
  clock: Clock;
  /** Live instances sharing the store (sizes leases, backs off slot polls). */
  peers: () => number;
  /** Random numbers in [0, 1) for the jitter of retries and polls. */
  random: () => number;
  waiters: Waiters;
}
