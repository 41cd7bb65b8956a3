/**
 * The tokens one instance holds of a service, as {@linkcode SlotLease} is
 * its slots: leased from the capacity store ahead of need (sized by
 * `lease_policy.ts`), kept in a {@linkcode TokenStock} until they expire,
 * spent from memory, and handed to the requests waiting in the token queue
 * as they fall due. While the stock lasts a request costs no store call.
 *
 * @module
 */
import type { Clock, TimerHandle } from "../lib/mod.ts";
import type { CapacityStore, HeldParts, ServiceLimits } from "./capacity_store.ts";
import { DemandMeter, leaseSize, pipelineTokens, tokensNeeded } from "./lease_policy.ts";
import { TokenStock } from "./token_stock.ts";

/** Options for {@linkcode TokenSupply}. */
export interface TokenSupplyOptions extends HeldParts {
  limits: ServiceLimits;
  /** Lifetime τ of leased tokens, in ms. */
  leaseMs: number;
  /** Counts leases and tokens. */
  stats: { tokenLeases: number; tokensLeased: number; tokensSpent: number; tokensStranded: number };
}

/** The tokens one instance holds of a service (see the module doc). */
export class TokenSupply {
  #o: TokenSupplyOptions;
  #store: CapacityStore;
  #clock: Clock;
  #tokens: TokenStock;
  #leasing = false;
  /** Smoothed time a lease takes, in ms: how far ahead of need the next one is asked for. */
  #leaseRttMs = 20;
  /** Wakes the waiters when a lease may be asked for again (after a refusal). */
  #leaseRetryTimer: TimerHandle | undefined;
  /** Wakes the waiters when the next leased token falls due. */
  #dueTimer: TimerHandle | undefined;
  /** Demand estimate: tokens taken in the current and the previous second. */
  #demand = new DemandMeter();
  #closed = false;

  constructor(options: TokenSupplyOptions) {
    this.#o = options;
    this.#store = options.store;
    this.#clock = options.clock;
    this.#tokens = new TokenStock(options.leaseMs);
  }

  /** Spends one token from memory if one is due now; no store call. */
  spend(now: number): boolean {
    if (this.#tokens.count === 0) return this.#takeNow(now);
    this.#expire(now);
    if (this.#tokens.count === 0) return this.#takeNow(now);
    if (!this.#tokens.spend(now)) return false;
    this.#o.stats.tokensSpent++;
    this.#demand.count(1, now);
    return true;
  }

  /**
   * Refills ahead of need, one lease at a time, once the stock that will
   * still be valid when the next request is likely to come (after the
   * usual gap between requests, plus two lease round trips) is down to half
   * a lease. Counting only that stock matters when demand falls: a lease
   * sized for the busy spell before expires all at once, and the request
   * after it would otherwise find nothing and wait a KV round trip.
   */
  prefetch(now: number): void {
    if (!this.#store.shared || !this.#leaseIdle(now)) return;
    const rate = this.#demand.rate(now);
    const size = this.#leaseSize(0, rate);
    if (size <= 1) return;
    const gap = 1000 / Math.max(1, rate);
    if (this.#tokens.lastingAt(now + gap + 2 * this.#leaseRttMs) <= size / 2) this.#lease(size);
  }

  /** Grants the waiters the tokens due now, and leases for those still waiting. */
  pump(): void {
    const w = this.#o.waiters;
    const now = this.#clock.now();
    while (w.waiting() > 0 && this.spend(now)) w.grant();
    if (this.#closed) return;
    if (w.waiting() === 0) return this.prefetch(now);
    const stock = this.#tokens.count;
    if (stock > 0) this.#wakeWhenDue();
    if (w.waiting() <= stock || !this.#leaseIdle(now)) return;
    if (!this.#store.shared) return this.#lease(w.waiting() - stock);
    // Start the lease one turn later so that requests arriving together share it.
    this.#leasing = true;
    this.#clock.setTimeout(() => {
      this.#leasing = false;
      const need = tokensNeeded(
        w.waiting(),
        this.#tokens.count,
        pipelineTokens(this.#o.limits, this.#leaseRttMs),
      );
      if (need > 0 && !this.#closed) {
        this.#lease(this.#leaseSize(need, this.#demand.rate(this.#clock.now())));
      }
    }, 0);
  }

  /** The provider says only `available` are left: tokens held beyond that are dropped. */
  leaveAtMost(available: number): void {
    this.#expire(this.#clock.now());
    if (this.#tokens.count > available) {
      this.#tokens.stranded += this.#tokens.clear();
      this.#o.stats.tokensStranded = this.#tokens.stranded;
    }
  }

  /** Stops leasing and its timers; resolves once the unspent tokens are handed back. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#leaseRetryTimer !== undefined) this.#clock.clearTimeout(this.#leaseRetryTimer);
    if (this.#dueTimer !== undefined) this.#clock.clearTimeout(this.#dueTimer);
    this.#expire(this.#clock.now());
    const unused = this.#tokens.clear();
    if (unused > 0) await this.#store.returnTokens(unused);
  }

  /** Drops leased tokens not spent within leaseMs of falling due (see TokenStock). */
  #expire(now: number): void {
    this.#tokens.expire(now);
    this.#o.stats.tokensStranded = this.#tokens.stranded;
  }

  /** A token straight from a store that can give one without waiting (memory). */
  #takeNow(now: number): boolean {
    if (this.#store.takeNow === undefined || this.#closed || this.#store.takeNow(1) === 0) {
      return false;
    }
    this.#o.stats.tokensLeased++;
    this.#o.stats.tokensSpent++;
    this.#demand.count(1, now);
    return true;
  }

  /** How many tokens one lease asks for (see `leaseSize` in lease_policy.ts). */
  #leaseSize(waiting: number, demandRate: number): number {
    if (!this.#store.shared) return waiting;
    return leaseSize(waiting, demandRate, {
      limits: this.#o.limits,
      leaseMs: this.#o.leaseMs,
      peers: this.#o.peers(),
      leaseRttMs: this.#leaseRttMs,
    });
  }

  /**
   * True when no lease is under way and the stock (which may hold tokens
   * that fall due later) runs out within about two lease round trips. The
   * next lease is asked for no earlier than that, so an instance with many
   * waiters never reserves deep into the future.
   */
  #leaseIdle(now: number): boolean {
    if (this.#leasing || this.#leaseRetryTimer !== undefined || this.#closed) return false;
    const lastDue = this.#tokens.lastDueAt();
    return lastDue === undefined || lastDue <= now + 2 * this.#leaseRttMs;
  }

  /** Leased tokens that fall due later: wake the waiters when the first one does. */
  #wakeWhenDue(): void {
    const firstDue = this.#tokens.firstDueAt();
    if (this.#dueTimer !== undefined || firstDue === undefined) return;
    const delay = Math.max(0, firstDue - this.#clock.now());
    this.#dueTimer = this.#clock.setTimeout(() => {
      this.#dueTimer = undefined;
      this.pump();
    }, delay);
  }

  #lease(want: number): void {
    this.#leasing = true;
    this.#o.stats.tokenLeases++;
    const asked = this.#clock.now();
    this.#store.leaseTokens(want).then(
      ({ granted, retryAfterMs, firstAt, spacingMs = 0 }) => {
        this.#leasing = false;
        this.#leaseRttMs = 0.8 * this.#leaseRttMs + 0.2 * (this.#clock.now() - asked);
        if (this.#closed) {
          if (granted > 0) this.#store.returnTokens(granted).catch(() => {});
          return;
        }
        if (granted > 0) {
          const now = this.#clock.now();
          this.#tokens.add(granted, firstAt ?? now, spacingMs, now);
          this.#o.stats.tokensLeased += granted;
          this.pump();
        } else if (this.#o.waiters.waiting() > 0) {
          this.#retryLeaseIn(retryAfterMs);
        }
      },
      () => {
        // The store already retried; try again shortly rather than spin.
        this.#leasing = false;
        if (this.#o.waiters.waiting() > 0 && !this.#closed) this.#retryLeaseIn(250);
      },
    );
  }

  #retryLeaseIn(ms: number): void {
    // Jitter spreads instances that all wait for the same refill.
    const delay = Math.max(1, ms) * (this.#store.shared ? 1 + this.#o.random() * 0.2 : 1);
    this.#leaseRetryTimer = this.#clock.setTimeout(() => {
      this.#leaseRetryTimer = undefined;
      this.pump();
    }, delay);
  }
}
