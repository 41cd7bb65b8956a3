import type { SlotAdmission } from "../../limiter/mod.ts";
import type { Exchange } from "../exchange.ts";
import type { StageDeps } from "../stage_deps.ts";
import { waitOptions } from "./team_stages.ts";

/**
 * The admit stage: an in-flight slot, first in first out, within the
 * request's deadline. The key-health view is refreshed first when it is
 * stale. The usual request finds a slot free and waits for nothing (no
 * promise is made); `x.queueMs` records the wait.
 */
export function admit(p: StageDeps, x: Exchange): SlotAdmission | Promise<SlotAdmission> {
  x.now = p.clock.now();
  const refreshing = x.rt.fresh(x.now);
  const slot = refreshing ? undefined : x.rt.limiter.trySlot(x.now);
  if (slot !== undefined) {
    x.queueMs = x.now - x.started;
    return slot;
  }
  return waitForSlot(p, x, refreshing);
}

async function waitForSlot(
  p: StageDeps,
  x: Exchange,
  refreshing: Promise<void> | undefined,
): Promise<SlotAdmission> {
  const slot = await x.rt.limiter.acquireSlot(waitOptions(x, false));
  if (refreshing) await refreshing;
  x.now = p.clock.now();
  x.queueMs = x.now - x.started;
  return slot;
}
