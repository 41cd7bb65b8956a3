/**
 * Drives several limiter instances that share one KV, as several isolates
 * of one deployment would, and records every send. Used by the shared-limit
 * tests and by bench/shared_limits.ts.
 *
 * @module
 */
import {
  DegradingStore,
  KvCapacityStore,
  MemoryCapacityStore,
  ScopeLimiter,
  type ServiceLimits,
  systemClock,
} from "../../limiter/mod.ts";
import { kvCall, KvStatus, probeKey } from "../../kv/mod.ts";
import { faultyKv, type KvFaults } from "./faulty_kv.ts";

/** Options for {@linkcode runSharedLoad}. */
export interface SharedLoadOptions {
  instances: number;
  limits: ServiceLimits;
  durationMs: number;
  /** Concurrent requests each instance keeps trying to send. */
  workersPerInstance: number;
  /** How long each send stays in flight, in ms. */
  holdMs: number;
  leaseMs?: number;
  slotTtlMs?: number;
  faults: KvFaults;
  /** "local": each instance limits itself only (the baseline). */
  mode?: "shared" | "local";
  /** How the KV store shares tokens (see KvCapacityStore). Default "ledger". */
  tokens?: "ledger" | "compare_and_set";
  /**
   * Open loop: requests offered per second in all, spread over the instances
   * at random, instead of workers that send back to back.
   */
  offeredRps?: number;
  /** Called once the load runs, to inject faults mid-run. */
  during?: (elapsedMs: () => number) => Promise<void>;
}

/** What happened, send by send. */
export interface SharedLoadResult {
  /** Send times (ms since the start), sorted. */
  sends: number[];
  /** Most sends in flight at once across all instances. */
  maxInFlight: number;
  kvOps: number;
  /** KV operations per send after the first second (start-up excluded). */
  steadyOpsPerSend: number;
  /** Limiter-added latency of each admitted request (slot + token), in ms. */
  waits: number[];
  /** The same, for requests served wholly from the local stock (no KV call awaited). */
  fastWaits: number[];
  /** The same, for requests that waited for a lease or a slot write. */
  slowWaits: number[];
  limiters: ScopeLimiter[];
  events: string[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs the load and returns every send. */
export async function runSharedLoad(options: SharedLoadOptions): Promise<SharedLoadResult> {
  const base = await Deno.openKv(":memory:");
  const kv = faultyKv(base, options.faults);
  const events: string[] = [];
  const statuses: KvStatus[] = [];
  const limiters = Array.from({ length: options.instances }, (_, i) => {
    // Each instance has its own view of whether KV answers, as each process would.
    const status = new KvStatus({
      clock: systemClock,
      probe: () => kvCall(() => kv.get(probeKey()), { timeoutMs: 500, attempts: 1 }),
      log: (e) => events.push(`${i}:${e}`),
    });
    statuses.push(status);
    const store = options.mode === "local"
      ? new MemoryCapacityStore(options.limits, systemClock)
      : new DegradingStore(
        new KvCapacityStore(kv, "svc", options.limits, {
          instanceId: `i${i}`,
          clock: systemClock,
          slotTtlMs: options.slotTtlMs,
          tokens: options.tokens,
          call: { timeoutMs: 500, attempts: 2, sleep: (ms) => sleep(ms), status },
        }),
        options.limits,
        { clock: systemClock, peers: () => options.instances, status },
      );
    return new ScopeLimiter(options.limits, {
      store,
      clock: systemClock,
      leaseMs: options.leaseMs,
      slotTtlMs: options.slotTtlMs,
      peers: () => options.instances,
      queueLimit: 10_000,
    });
  });
  const t0 = performance.now();
  const elapsed = () => performance.now() - t0;
  const end = Date.now() + options.durationMs;
  const sends: number[] = [];
  const waits: number[] = [];
  const fastWaits: number[] = [];
  const slowWaits: number[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  options.faults.ops = 0;
  /** One request; false when it was refused. */
  const send = async (limiter: ScopeLimiter): Promise<boolean> => {
    const asked = performance.now();
    // Served from the local stock when the counters move before the first await.
    const spentBefore = limiter.stats.tokensSpent;
    const inFlightBefore = limiter.inFlight;
    const slotPromise = limiter.acquireSlot({ deadline: end });
    const slotAtOnce = limiter.inFlight > inFlightBefore;
    const slot = await slotPromise;
    if (!slot.ok) return false;
    const tokenPromise = limiter.takeToken({ deadline: end });
    const fast = slotAtOnce && limiter.stats.tokensSpent > spentBefore;
    const token = await tokenPromise;
    if (!token.ok) {
      slot.release();
      return false;
    }
    const wait = performance.now() - asked;
    waits.push(wait);
    (fast ? fastWaits : slowWaits).push(wait);
    sends.push(elapsed());
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await sleep(options.holdMs);
    inFlight--;
    slot.release();
    return true;
  };
  const worker = async (limiter: ScopeLimiter) => {
    while (Date.now() < end) await send(limiter);
  };
  const openLoop = async (perSec: number) => {
    const pending: Promise<boolean>[] = [];
    for (let i = 0; Date.now() < end; i++) {
      const due = t0 + (i * 1000) / perSec;
      const delay = due - performance.now();
      if (delay > 0) await sleep(delay);
      pending.push(send(limiters[Math.floor(Math.random() * limiters.length)]));
    }
    await Promise.all(pending);
  };
  let opsAtWarm = 0;
  const warm = setTimeout(() => opsAtWarm = options.faults.ops, 1000);
  const heartbeat = setInterval(
    () => limiters.forEach((l) => l.heartbeat()),
    (options.slotTtlMs ?? 15_000) / 3,
  );
  const work = options.offeredRps
    ? [openLoop(options.offeredRps)]
    : limiters.flatMap((l) => Array.from({ length: options.workersPerInstance }, () => worker(l)));
  await Promise.all([...work, options.during?.(elapsed)]);
  clearInterval(heartbeat);
  clearTimeout(warm);
  const kvOps = options.faults.ops;
  const steadySends = sends.filter((t) => t >= 1000).length;
  options.faults.failing = false;
  await Promise.all(limiters.map((l) => l.close()));
  for (const s of statuses) s.close();
  base.close();
  return {
    sends: sends.sort((a, b) => a - b),
    maxInFlight,
    kvOps,
    steadyOpsPerSend: (kvOps - opsAtWarm) / Math.max(1, steadySends),
    waits,
    fastWaits,
    slowWaits,
    limiters,
    events,
  };
}

/**
 * The worst window of width `windowMs`: sends in it divided by the
 * guarantee `burst + rps·(W + τ)`. At most 1 when the guarantee holds.
 */
export function worstWindowRatio(
  sends: number[],
  windowMs: number,
  limits: ServiceLimits,
  leaseMs: number,
): number {
  let worst = 0;
  let j = 0;
  for (let i = 0; i < sends.length; i++) {
    while (j < sends.length && sends[j] < sends[i] + windowMs) j++;
    worst = Math.max(worst, j - i);
  }
  return worst / (limits.burst + (limits.rps * (windowMs + leaseMs)) / 1000);
}
