import { type Clock, systemClock } from "../lib/mod.ts";
import type { KvStatus } from "./status.ts";

/** Options for {@linkcode kvCall}. */
export interface KvCallOptions {
  /** Longest one attempt may take, in ms. Default 2000. */
  timeoutMs?: number;
  /** Attempts in all, the first included. Default 4. */
  attempts?: number;
  /** Times each attempt out, and waits between attempts. Default: the system clock. */
  clock?: Clock;
  /** Waits between attempts. Default: a timer of `clock`. */
  sleep?: (ms: number) => Promise<void>;
  /** Random numbers in [0, 1) for the jitter between attempts. Default: `Math.random`. */
  random?: () => number;
  /**
   * Whether KV answers, shared by every caller: while it is down the call
   * fails at once, and a call that fails after its retries takes it down.
   * Default: none (every call tries).
   */
  status?: KvStatus;
}

/** A KV call that kept failing after its bounded retries. */
export class KvUnavailableError extends Error {
  override name = "KvUnavailableError";
}

/** True for failures worth another try: lock contention, timeouts, dropped connections. */
export function isTransientKvError(e: unknown): boolean {
  const message = e instanceof Error ? e.message : String(e);
  return /database is locked|busy|timed out|timeout|connection|network|unavailable|reset/i.test(
    message,
  );
}

/** `promise`, or a rejection once `ms` pass on `clock` without it settling. */
export function withTimeout<T>(clock: Clock, promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<Clock["setTimeout"]> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = clock.setTimeout(() => reject(new Error(`KV call timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clock.clearTimeout(timer!));
}

/**
 * Runs one KV call with a timeout and a bounded number of retries on
 * transient errors (`database is locked`, timeouts). A timed-out write may
 * still land later; every caller is written so that such a late write errs
 * on the safe side (tokens or slots taken and never used, not given twice).
 * With `status`, a KV known to be down is not tried at all.
 *
 * @throws {KvUnavailableError} after the last attempt fails.
 */
export async function kvCall<T>(fn: () => Promise<T>, options: KvCallOptions = {}): Promise<T> {
  const { timeoutMs = 2000, attempts = 4, status, random = Math.random } = options;
  const clock = options.clock ?? systemClock;
  const sleep = options.sleep ??
    ((ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms)));
  if (status && !status.up) {
    throw new KvUnavailableError(`KV unavailable: ${status.lastError || "not connected"}`);
  }
  let last: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      const started = clock.now();
      const answer = await withTimeout(clock, fn(), timeoutMs);
      status?.took(clock.now() - started);
      return answer;
    } catch (e) {
      last = e;
      if (!isTransientKvError(e)) throw e;
      if (attempt + 1 < attempts) {
        await sleep(Math.min(200, 5 * 2 ** attempt) * (0.5 + random()));
      }
    }
  }
  status?.fail(last);
  throw new KvUnavailableError(`KV unavailable: ${(last as Error)?.message ?? last}`);
}
