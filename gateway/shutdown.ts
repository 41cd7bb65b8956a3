/**
 * The end of a gateway: `close()` stops the background work and hands back
 * what this instance holds (tokens, slots, reservations, its presence);
 * `drain()` does that while the answers in flight run, within one budget
 * measured from the signal, and ends the streams still open at an event
 * boundary. Both are idempotent.
 *
 * @module
 */
import type { GatewayConfig } from "../config/mod.ts";
import type { KvStatus } from "../kv/mod.ts";
import type { Clock } from "../limiter/mod.ts";
import type { Drain, DrainReport } from "./drain.ts";
import type { Lifecycle } from "./lifecycle.ts";

/** What a gateway's end hands back and stops. */
export interface EndParts {
  config: GatewayConfig;
  clock: Clock;
  drain: Drain;
  /** Every background part and what is written behind: stopped, closed and waited for. */
  lifecycle: Lifecycle;
  kvStatus: KvStatus;
  /** Whether the gateway made its KvStatus (and so closes it). */
  ownsKvStatus: boolean;
}

/** A gateway's `close()` and `drain()` over its parts. */
export function gatewayEnd(p: EndParts): {
  close(): Promise<void>;
  drain(budgetMs?: number): Promise<DrainReport>;
} {
  let closing: Promise<void> | undefined;
  let draining: Promise<DrainReport> | undefined;
  const close = () =>
    closing ??= (async () => {
      await p.lifecycle.close();
      if (p.ownsKvStatus) p.kvStatus.close();
    })();
  const drain = (budgetMs = p.config.shutdownMs) =>
    draining ??= (async () => {
      const deadline = p.clock.now() + budgetMs;
      p.drain.start();
      // The hand-backs and KV writes run while the answers in flight do.
      const closed = close();
      const shares = shutdownShares(budgetMs, p.config.drainMs, p.kvStatus.latencyMs);
      const report = await p.drain.run(shares.drainMs, shares.graceMs);
      // The slots of the last responses go back after every earlier write.
      const written = closed.then(() => p.lifecycle.settled());
      await untilOrDeadline(written, p.clock, deadline);
      return report;
    })();
  return { close, drain };
}

/**
 * How a shutdown budget is shared: time kept for the last writes (three KV
 * round trips at the latency seen lately, 250 ms at least, 1.5 s at most),
 * the grace for streams to reach an event boundary (500 ms, less when the
 * budget is short), and the rest, up to `drainMs`, for answers in flight.
 */
export function shutdownShares(
  budgetMs: number,
  drainMs: number,
  kvLatencyMs: number,
): { drainMs: number; graceMs: number } {
  const writes = Math.min(1500, Math.max(250, 3 * kvLatencyMs));
  const graceMs = Math.max(0, Math.min(500, (budgetMs - writes) / 4));
  return { drainMs: Math.max(0, Math.min(drainMs, budgetMs - writes - graceMs)), graceMs };
}

/** Resolves when `work` does, or at `deadline` on `clock`, whichever comes first. */
function untilOrDeadline(work: Promise<unknown>, clock: Clock, deadline: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = clock.setTimeout(resolve, Math.max(0, deadline - clock.now()));
    work.finally(() => {
      clock.clearTimeout(timer);
      resolve();
    });
  });
}
