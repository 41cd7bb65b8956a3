import { sleep } from "../clock/mod.ts";
import type { CapacityStore, Clock } from "../limiter/mod.ts";

/** Whether a request may go now, or when it may. */
export type MeterTurn = { ok: true } | { ok: false; retryAfterMs: number };

/** Leased tokens: spendable once the batch's last one falls due, until `leaseMs` after. */
interface Batch {
  n: number;
  dueAt: number;
}

/** Options for {@linkcode TokenMeter}. */
export interface TokenMeterOptions {
  /** The shared ledger of the key's tokens (rate: tpm / 60 per second). */
  store: CapacityStore;
  clock: Clock;
  /** Tokens per minute the provider grants the key. */
  tpm: number;
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
 */
export class TokenMeter {
  #store: CapacityStore;
  #clock: Clock;
  #leaseMs: number;
  #chunk: number;
  #batches: Batch[] = [];

  constructor(options: TokenMeterOptions) {
    this.#store = options.store;
    this.#clock = options.clock;
    this.#leaseMs = options.leaseMs ?? 2000;
    if (!(options.tpm > 0)) throw new RangeError(`tpm must be > 0 (got ${options.tpm})`);
    this.#chunk = Math.max(1, Math.ceil(options.tpm / 60));
  }

  /** Spends `cost` tokens from memory if they are due now; no store call. */
  tryTake(cost: number, now: number): boolean {
    let due = 0;
    for (const b of this.#batches) {
      if (b.dueAt + this.#leaseMs < now) b.n = 0;
      else if (b.dueAt <= now) due += b.n;
    }
    this.#batches = this.#batches.filter((b) => b.n > 0);
    if (due < cost) return false;
    let left = cost;
    for (const b of this.#batches) {
      if (b.dueAt > now || left === 0) continue;
      const take = Math.min(b.n, left);
      b.n -= take;
      left -= take;
    }
    this.#batches = this.#batches.filter((b) => b.n > 0);
    return true;
  }

  /**
   * Reserves `cost` tokens and resolves once they may be spent, or with the
   * wait when that would be after `deadline` (the tokens then stay reserved
   * for the next request, and expire if none comes).
   */
  async take(cost: number, deadline: number, signal?: AbortSignal): Promise<MeterTurn> {
    for (let round = 0; round < 8; round++) {
      const now = this.#clock.now();
      if (this.tryTake(cost, now)) return OK;
      const held = this.#batches.reduce((s, b) => s + b.n, 0);
      if (held < cost || !this.#batches.some((b) => b.dueAt > now)) {
        const lease = await this.#store.leaseTokens(Math.max(cost - held, this.#chunk));
        if (lease.granted === 0) {
          if (now + lease.retryAfterMs > deadline) {
            return { ok: false, retryAfterMs: lease.retryAfterMs };
          }
          if (!(await sleep(this.#clock, lease.retryAfterMs, signal))) break;
          continue;
        }
        const first = lease.firstAt ?? now;
        // Due before it arrived (a fresh ledger's burst): it lasts leaseMs from now.
        const dueAt = Math.max(now, first + (lease.granted - 1) * (lease.spacingMs ?? 0));
        this.#batches.push({ n: lease.granted, dueAt });
      }
      const at = Math.max(...this.#batches.map((b) => b.dueAt));
      const wait = at - this.#clock.now();
      if (at > deadline) return { ok: false, retryAfterMs: Math.max(1, Math.ceil(wait)) };
      if (wait > 0 && !(await sleep(this.#clock, wait, signal))) break;
    }
    return { ok: false, retryAfterMs: 1000 };
  }

  /**
   * Adds tokens an answer used beyond its estimate: reserved on the ledger
   * and never spent, so that later requests wait them out.
   */
  charge(extra: number): void {
    if (extra >= 1) this.#store.leaseTokens(Math.round(extra)).catch(() => {});
  }

  /** The provider says only `available` tokens are left now. */
  leaveAtMost(available: number): void {
    const held = this.#batches.reduce((s, b) => s + b.n, 0);
    if (held > available) this.#batches = [];
    this.#store.leaveAtMost?.(available).catch(() => {});
  }
}
