/**
 * The generic cell rate algorithm (GCRA) as a ledger of reserved time,
 * the shared-token form kvgate keeps in Deno KV. The ledger holds one
 * number, the theoretical arrival time (TAT): the end of everything
 * reserved so far, in microseconds. Reserving `n` tokens is
 * `max(ledger, now)` then `+ n·T` (T = 1/rps), two mutations that commute
 * with everyone else's, so instances never conflict. Token i of a
 * reservation sits at ledger position p and may be spent from `p - burst·T`
 * on: a fresh ledger lets a whole burst out at once and paces the rest at rps.
 *
 * All functions are pure.
 *
 * @module
 */
import type { BucketRate } from "./bucket.ts";

/** Microseconds of ledger one token occupies: 1/rps, rounded up (errs slow, never fast). */
export function emissionMicros(rate: BucketRate): bigint {
  return BigInt(Math.ceil(1e6 / rate.rps));
}

/** `now` (epoch ms) as a ledger position in whole microseconds. */
export function ledgerNow(nowMs: number): bigint {
  return BigInt(Math.floor(nowMs * 1000));
}

/** A reservation as read back: its commit's versionstamp and its token count. */
export interface LedgerClaim {
  versionstamp: string;
  n: number;
}

/**
 * The exact end of the reservation committed at `mine`, from a ledger value
 * and the claims read in the same snapshot: every claim committed later
 * (a greater versionstamp) sits after it.
 */
export function reservationEnd(
  tat: bigint,
  mine: string,
  claims: readonly LedgerClaim[],
  rate: BucketRate,
): bigint {
  let after = 0n;
  for (const c of claims) if (c.versionstamp > mine) after += BigInt(c.n);
  return tat - after * emissionMicros(rate);
}

/** When the tokens of one reservation may be spent. */
export interface ReservationSchedule {
  /** Epoch ms from which the first token may be spent (may be in the past). */
  firstAt: number;
  /** Ms between one token's earliest time and the next one's. */
  spacingMs: number;
}

/** When the `n` tokens of a reservation ending at ledger position `end` may be spent. */
export function scheduleOf(end: bigint, n: number, rate: BucketRate): ReservationSchedule {
  const t = emissionMicros(rate);
  const firstPosition = end - BigInt(n - 1) * t;
  const firstAt = Number(firstPosition - BigInt(rate.burst) * t) / 1000;
  return { firstAt, spacingMs: Number(t) / 1000 };
}

/**
 * The ledger value after handing back the last `n` tokens of a reservation,
 * or undefined when that would change nothing (the ledger already lies in
 * the past). Only valid while no other reservation landed after it (the
 * caller checks the versionstamp), and together with lowering its claim by `n`.
 */
export function handBack(
  tat: bigint,
  n: number,
  nowMs: number,
  rate: BucketRate,
): bigint | undefined {
  if (n <= 0 || tat <= ledgerNow(nowMs)) return undefined;
  return tat - BigInt(n) * emissionMicros(rate);
}

/**
 * One pass of a GCRA pace kept in memory (ms): with `tat` the theoretical
 * arrival time, a pass at `now` is allowed when `tat - now <= toleranceMs`
 * (tolerance = (burst - 1) passes); returns the new TAT, or undefined
 * when the pass must wait until `tat - toleranceMs`.
 */
export function gcraPass(
  tat: number,
  now: number,
  intervalMs: number,
  toleranceMs: number,
): number | undefined {
  if (tat - now > toleranceMs) return undefined;
  return Math.max(tat, now) + intervalMs;
}
