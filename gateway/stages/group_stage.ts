/**
 * The model-group stage: a request to `/<group>/v1/…` is given to the
 * first of the group's targets whose service can take it now or within
 * the group's `switchAfterMs` — judged from what this instance already
 * holds of the shared state (key health, the provider's pause, the
 * service's queue), so that a target that cannot is skipped with nothing
 * sent and no KV call. A target that answers 429/5xx after its own
 * retries, or not at all, hands the request to the next one; nothing has
 * reached the client then (a stream's first byte ends the choice).
 *
 * @module
 */
import type { GroupTarget } from "../../config/mod.ts";
import { statusLabel } from "../../status/mod.ts";
import type { Bytes } from "./body.ts";
import { gatewayErrors } from "../error_catalogue.ts";
import type { GatewayError } from "../errors.ts";
import type { Exchange } from "../exchange.ts";
import type { GroupWalk, ServedGroup, Skip, SkipReason } from "./group_walk.ts";
import type { LogLine } from "../log.ts";
import type { StageDeps } from "../stage_deps.ts";
import type { ServiceRuntime } from "../runtime.ts";

/**
 * What the attempt stage answers, instead of a response, when a group's
 * target failed (429/5xx after its retries, or no answer) and another
 * target may still take the request: nothing has gone to the client.
 */
export const NEXT_TARGET: unique symbol = Symbol("next target");

/** `service/model`, as the header and the log name a target. */
export function targetName(t: GroupTarget): string {
  return `${t.service}/${t.model}`;
}

/** The walk of a request to a group at `path` (`/<group>/…`). */
export function startGroupWalk(served: ServedGroup, path: string): GroupWalk {
  return {
    served,
    at: -1,
    skipped: [],
    rest: path.slice(served.group.name.length + 1),
    parsed: undefined,
  };
}

/**
 * Why the target's service cannot take a request within `withinMs`, or
 * undefined when it can. Reads memory only: the key health and the
 * provider's pause every instance shares through KV, as this instance last
 * read them (a target chosen has them read again before it is sent to, in
 * the admit stage; one passed over, in the background: see
 * {@linkcode nextTarget}), and this instance's queue.
 */
export function whyNot(rt: ServiceRuntime, now: number, withinMs: number): Skip | undefined {
  const target = "";
  if (rt.pool.keys.length === 0) return { target, reason: "no_keys", untilMs: Infinity };
  const pause = rt.backoff?.pause;
  if (pause?.admin) return { target, reason: "service_paused", untilMs: Infinity };
  if (pause !== undefined && pause.until > now + withinMs) {
    return { target, reason: "provider_backoff", untilMs: pause.until };
  }
  let earliest = Infinity;
  let daily = true;
  for (const key of rt.pool.keys) {
    const h = rt.pool.health(key.id);
    if (h === undefined || h.until <= now + withinMs) {
      earliest = -1;
      break;
    }
    if (h.until < earliest) earliest = h.until;
    if (h.reason !== "daily_quota") daily = false;
  }
  if (earliest >= 0) {
    return { target, reason: daily ? "day_spent" : "keys_resting", untilMs: earliest };
  }
  const backlog = rt.limiter.backlogMs();
  if (backlog > withinMs) return { target, reason: "rate_limited", untilMs: now + backlog };
  return undefined;
}

/**
 * Moves the walk to the next target that can take the request, from the
 * one after the current: binds the request to it (its service, its path).
 * Every target passed over is noted with why, and its view read again in
 * the background if it is getting old: a target no request is sent to
 * would otherwise be judged on what this instance last knew of it for
 * ever (an admin's resume made on another instance, a rest ended there).
 * The answer when none is left.
 */
export function nextTarget(x: Exchange, walk: GroupWalk, now: number): GatewayError | undefined {
  const { group, runtimes } = walk.served;
  for (let i = walk.at + 1; i < group.targets.length; i++) {
    const skip = whyNot(runtimes[i], now, group.switchAfterMs);
    if (skip === undefined) {
      bindTarget(x, walk, i);
      return undefined;
    }
    runtimes[i].refreshSoon(now);
    skip.target = targetName(group.targets[i]);
    walk.skipped.push(skip);
  }
  return everyTargetOut(walk, now);
}

/** The last target failed after its retries: noted, and the next one is tried. */
export function targetFailed(walk: GroupWalk, reason: SkipReason): void {
  const target = walk.served.group.targets[walk.at];
  walk.skipped.push({ target: targetName(target), reason, untilMs: -1 });
}

/**
 * Until when a request may wait on its current target: its deadline, or
 * for a group's request with a target left, `switchAfterMs` from `now`.
 */
export function waitLimit(x: Exchange, now: number): number {
  if (!hasNextTarget(x.group)) return x.deadline;
  return Math.min(x.deadline, now + x.group!.served.group.switchAfterMs);
}

/** Whether a target after the current one could still be tried. */
export function hasNextTarget(walk: GroupWalk | undefined): boolean {
  return walk !== undefined && walk.at + 1 < walk.served.group.targets.length;
}

function bindTarget(x: Exchange, walk: GroupWalk, i: number): void {
  walk.at = i;
  const rt = walk.served.runtimes[i];
  x.rt = rt;
  x.style = rt.service.style;
  x.target = { path: `/${rt.service.name}${walk.rest}`, search: x.target.search };
  x.key = undefined;
  x.keyCost = 0;
  x.probe = false;
}

/**
 * The body for the current target: the client's, with its `model` replaced
 * by the target's when it differs (re-encoded only then). A body that is
 * not a JSON object passes as it is.
 */
export function bodyForTarget(walk: GroupWalk, body: Bytes | undefined): Bytes | undefined {
  if (body === undefined || body.byteLength === 0) return body;
  const model = walk.served.group.targets[walk.at].model;
  if (walk.parsed === undefined) {
    try {
      const v = JSON.parse(decoder.decode(body));
      if (typeof v !== "object" || v === null || Array.isArray(v)) return body;
      walk.parsed = v;
    } catch {
      return body;
    }
  }
  if (walk.parsed!.model === model) return body;
  return encoder.encode(JSON.stringify({ ...walk.parsed, model }));
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Every target is out: a 429 of the kind of the target that frees up
 * first, `Retry-After` until then, the message naming each target's reason.
 */
function everyTargetOut(walk: GroupWalk, now: number): GatewayError {
  const known = walk.skipped.filter((s) => s.untilMs > now && Number.isFinite(s.untilMs));
  const first = known.sort((a, b) => a.untilMs - b.untilMs)[0];
  const retryAfterMs = first === undefined ? 1000 : first.untilMs - now;
  const reasons = walk.skipped.map((s) => `${s.target}: ${s.reason}`).join("; ");
  const name = walk.served.group.name;
  const code = first?.reason === "provider_backoff"
    ? "gateway_provider_backoff"
    : first?.reason === "rate_limited"
    ? "gateway_rate_limited"
    : "gateway_keys_resting";
  return {
    ...gatewayErrors.keysResting(name, retryAfterMs),
    code,
    message: `No target of the group ${name} can take the request now (${reasons}); retry later.`,
  };
}

/** The log line's group fields, and the group metrics, once per request. */
export function accountGroup(p: StageDeps, x: Exchange, status: number, line: LogLine): void {
  const walk = x.group!;
  const group = walk.served.group;
  const target = walk.at >= 0 ? targetName(group.targets[walk.at]) : "";
  line.group = group.name;
  if (target) line.target = target;
  if (walk.skipped.length > 0) {
    line.skipped = walk.skipped.map((s) => ({ target: s.target, reason: s.reason }));
  }
  p.metrics.groupRequests.inc(group.name, target || "none", statusLabel(status));
  for (const s of walk.skipped) p.metrics.groupSkips.inc(group.name, s.target, s.reason);
}
