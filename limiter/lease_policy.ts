import type { ServiceLimits } from "./capacity_store.ts";

/** What a lease is sized from. */
export interface LeaseInputs {
  limits: ServiceLimits;
  /** Lifetime τ of leased tokens, in ms. */
  leaseMs: number;
  /** Live instances sharing the limits (at least 1). */
  peers: number;
  /** Smoothed time a lease takes, in ms. */
  leaseRttMs: number;
}

/** Tokens the service's rate spends during two lease round trips. */
export function pipelineTokens(limits: ServiceLimits, leaseRttMs: number): number {
  return Math.ceil((limits.rps * 2 * leaseRttMs) / 1000);
}

/**
 * How many tokens one lease of a shared store asks for: what waits now, or
 * about half a lease lifetime of recent demand, whichever is more; never
 * more than `max(burst, cap)` with cap = (burst + rps·τ) / (4·instances) or
 * two lease round trips at rps if more, so leased tokens left unspent stay a
 * small share of the limit.
 */
export function leaseSize(waiting: number, demandRate: number, inputs: LeaseInputs): number {
  const { limits, leaseMs } = inputs;
  const peers = Math.max(1, inputs.peers);
  // A share of the limit, but never less than two lease round trips of the
  // whole rate: one busy instance must keep up even when KV is slow.
  const cap = Math.max(
    1,
    Math.ceil((limits.burst + (limits.rps * leaseMs) / 1000) / (4 * peers)),
    pipelineTokens(limits, inputs.leaseRttMs),
  );
  const ahead = Math.min(cap, Math.ceil((demandRate * leaseMs) / 2000));
  return Math.max(1, Math.min(Math.max(waiting, ahead), Math.max(cap, limits.burst)));
}

/**
 * Tokens the waiters need beyond the stock; at least what the service's
 * rate spends during two lease round trips (up to the waiters' number), so
 * that back-to-back leases keep up when KV is slow.
 */
export function tokensNeeded(waiting: number, stock: number, pipeline: number): number {
  if (waiting <= stock) return 0;
  return Math.max(waiting - stock, Math.min(waiting, pipeline));
}

/** Tokens taken per second lately: a count of this second's and the last second's, blended. */
export class DemandMeter {
  #windowStart = 0;
  #current = 0;
  #previous = 0;

  /** Counts `n` tokens taken at `now`. */
  count(n: number, now: number): void {
    if (now - this.#windowStart >= 1000) {
      this.#previous = now - this.#windowStart >= 2000 ? 0 : this.#current;
      this.#current = 0;
      this.#windowStart = now;
    }
    this.#current += n;
  }

  /** Tokens per second at `now`; it falls to 0 within two seconds of the last count. */
  rate(now: number): number {
    const age = now - this.#windowStart;
    if (age >= 2000) return 0;
    // The current second has ended without a count since: it fades as the previous one would.
    if (age >= 1000) return this.#current * (1 - (age - 1000) / 1000);
    return this.#previous * (1 - age / 1000) + this.#current;
  }
}
