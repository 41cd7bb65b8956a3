import {
  type CapacityStore,
  type Clock,
  type TokenBatch,
  TokenStock,
  WakeList,
} from "../limiter/mod.ts";

/**
 * Whether a request may go now, or when it may; `tooLarge` when its cost
 * is more than the key grants in a window, so that no wait could help.
 */
export type MeterTurn = { ok: true } | { ok: false; retryAfterMs: number; tooLarge?: boolean };

/** Options for {@linkcode TokenMeter}. */
export interface TokenMeterOptions {
  /** The shared ledger of the key's tokens (rate: tpm / 60 per second). */
  store: CapacityStore;
  clock: Clock;
  /** Tokens per minute the provider grants the key. */
  tpm: number;
  /**
   * The most one reservation may hold (the ledger's burst): a request
   * costing more is refused before anything is reserved. Default `tpm`.
   */
  burst?: number;
  /** How long leased tokens stay spendable after falling due, in ms. Default 2000. */
  leaseMs?: number;
}

const OK: MeterTurn = Object.freeze({ ok: true });

/**
 * One key's model tokens per minute, shared through a ledger store. A
 * request reserves its estimated cost before it is sent; the answer's
 * `usage` adds what the estimate missed (a debt the next requests wait
 * out). Tokens are leased a second's worth at a time, so small requests
 * spend from memory; a batch may be spent once its last token has fallen
 * due, and is dropped `leaseMs` after that. So every instance together
 * sends at most `burst + rate·(W + τ + 1 s)` in any window W.
 *
 * No single request can block the key for everyone: a cost above the burst
 * is refused with nothing reserved, a reservation never exceeds the burst,
 * what an answer used beyond its estimate is charged up to the burst, and
 * a request that gives up hands back what it reserved (the ledger takes it
 * back when nobody reserved after it; else it lapses within a window).
 */
export class TokenMeter {
  #store: CapacityStore;
  #clock: Clock;
  #chunk: number;
  #burst: number;
  /** Leased tokens, each lease spendable once its last token falls due, for leaseMs after. */
  #stock: TokenStock;
  /**
   * Requests waiting for tokens to fall due, or for a lease after a refusal:
   * woken early when another gives up and hands its reservation back.
   */
  #waits: WakeList;

  constructor(options: TokenMeterOptions) {
    this.#store = options.store;
    this.#clock = options.clock;
    this.#waits = new WakeList(options.clock);
    this.#stock = new TokenStock(options.leaseMs ?? 2000);
    if (!(options.tpm > 0)) throw new RangeError(`tpm must be > 0 (got ${options.tpm})`);
    this.#chunk = Math.max(1, Math.ceil(options.tpm / 60));
    this.#burst = options.burst ?? options.tpm;
    if (!(this.#burst >= 1)) throw new RangeError(`burst must be >= 1 (got ${options.burst})`);
  }

  /** The largest cost one request may have on this key (the burst). */
  get ceiling(): number {
    return this.#burst;
  }

  /** Spends `cost` tokens from memory if they are due now; no store call. */
  tryTake(cost: number, now: number): boolean {
    this.#stock.expire(now);
    return this.#stock.spendDue(cost, now);
  }

  /**
   * Reserves `cost` tokens and resolves once they may be spent, or with the
   * wait when that would be after `deadline` (the tokens then stay reserved
   * for the next request, and expire if none comes).
   */
  async take(cost: number, deadline: number, signal?: AbortSignal): Promise<MeterTurn> {
    if (cost > this.#burst) return { ok: false, retryAfterMs: 60_000, tooLarge: true };
    /** What this call reserved: handed back if it gives up. */
    const mine: TokenBatch[] = [];
    for (let round = 0; round < 8; round++) {
      const now = this.#clock.now();
      if (this.tryTake(cost, now)) return OK;
      const held = this.#stock.count;
      if (held < cost || this.#stock.allDueAt() <= now) {
        const want = Math.min(this.#burst, Math.max(cost - held, this.#chunk));
        const lease = await this.#store.leaseTokens(want);
        if (lease.granted === 0) {
          if (now + lease.retryAfterMs > deadline) {
            return this.#giveUp(mine, lease.retryAfterMs);
          }
          const until = now + lease.retryAfterMs;
          if (!(await this.#waits.wait(until, signal))) break;
          // Woken early by a hand-back: a look that is not one of the rounds.
          if (this.#clock.now() < until) round--;
          continue;
        }
        const first = lease.firstAt ?? now;
        // Whole once its last token is due; due before it arrived (a fresh ledger's burst): now.
        const dueAt = Math.max(now, first + (lease.granted - 1) * (lease.spacingMs ?? 0));
        mine.push(this.#stock.add(lease.granted, dueAt, 0, now));
      }
      const at = this.#stock.allDueAt();
      const wait = at - this.#clock.now();
      if (at > deadline) return this.#giveUp(mine, Math.max(1, Math.ceil(wait)));
      if (wait > 0 && !(await this.#waits.wait(at, signal))) break;
      if (this.#clock.now() < at) round--;
    }
    return this.#giveUp(mine, 1000);
  }

  /** Hands back what a request that gives up had reserved and not yet seen fall due. */
  #giveUp(mine: TokenBatch[], retryAfterMs: number): MeterTurn {
    const now = this.#clock.now();
    let back = 0;
    // What has fallen due stays, spendable by the next request here.
    for (const b of mine) back += this.#stock.withdraw(b, now);
    if (back > 0) {
      this.#store.returnTokens(back).then(() => this.#waits.wake(), () => {});
    }
    return { ok: false, retryAfterMs };
  }

  /**
   * Adds tokens an answer used beyond its estimate: reserved on the ledger
   * and never spent, so that later requests wait them out.
   */
  charge(extra: number): void {
    // At most a burst: one answer cannot hold the key for more than a window.
    const debt = Math.min(this.#burst, Math.round(extra));
    if (debt >= 1) this.#store.leaseTokens(debt).catch(() => {});
  }

  /** The provider says only `available` tokens are left now. */
  leaveAtMost(available: number): void {
    if (this.#stock.count > available) this.#stock.clear();
    this.#store.leaveAtMost?.(available).catch(() => {});
  }
}
