/**
 * Serving model groups: the groups with their targets' runtimes, a group's
 * model list, the switch to the next target, and what the answer and the
 * log say of it (`x-kvgate-target`). The choice itself, and the log
 * line's group fields and the group metrics, are `group_stage.ts`.
 *
 * @module
 */
import type { ModelGroup } from "../../config/mod.ts";
import type { GroupStatus } from "../../status/mod.ts";
import { gatewayErrors } from "../error_catalogue.ts";
import { appendGatewayHeaders } from "../headers.ts";
import { type Exchange, handSlotBack } from "../exchange.ts";
import { nextTarget, targetName, whyNot } from "./group_stage.ts";
import type { GroupWalk, ServedGroup } from "./group_walk.ts";
import type { StageDeps } from "../stage_deps.ts";
import { answer } from "./respond.ts";
import type { Route, RouteCache } from "./route.ts";
import type { ServiceRuntime } from "../runtime.ts";
import { sentUpstream } from "./team_stages.ts";

export { NEXT_TARGET } from "./group_stage.ts";

/** Each configured group with its targets' service runtimes, by name. */
export function servedGroups(
  groups: readonly ModelGroup[],
  runtimes: ReadonlyMap<string, ServiceRuntime>,
): Map<string, ServedGroup> {
  return new Map(groups.map((group) => [group.name, {
    group,
    runtimes: group.targets.map((t) => runtimes.get(t.service)!),
  }]));
}

/** `GET /<group>/v1/models`: the group's name is its one model. */
export function groupModels(p: StageDeps, x: Exchange, walk: GroupWalk): Response {
  const name = walk.served.group.name;
  const body = JSON.stringify({
    object: "list",
    data: [{ id: name, object: "model", created: 0, owned_by: "kvgate" }],
  });
  p.log({ id: x.id, group: name, method: x.req.method, status: 200, outcome: "group_models" });
  return new Response(x.req.method === "HEAD" ? null : body, {
    headers: appendGatewayHeaders([["content-type", "application/json"]], x.id, x.cors),
  });
}

/**
 * The current target failed and the next is tried: what the request held
 * on the old one (its service slot, its team's slot, its place in the fair
 * gate) goes back;
 * the route to the next, or the answer when no target is left.
 */
export function switchTarget(p: StageDeps, routes: RouteCache, x: Exchange): Route | Response {
  const walk = x.group!;
  handSlotBack(x);
  const pass = x.team;
  if (pass !== undefined) {
    sentUpstream(x);
    pass.releaseSlot?.();
    pass.releaseSlot = undefined;
    pass.limiter = undefined;
  }
  x.upstream = undefined;
  const out = nextTarget(x, walk, p.clock.now());
  if (out) return answer(p, x, out);
  const r = routes.route(x.target, x.style);
  if ("error" in r) return answer(p, x, gatewayErrors.internal());
  return r;
}

/** Says which target answered, on the answer. */
export function markTarget(x: Exchange, response: Response): void {
  const walk = x.group!;
  if (walk.at < 0) return;
  try {
    response.headers.set("x-kvgate-target", targetName(walk.served.group.targets[walk.at]));
  } catch { /* headers of a response that cannot change: said in the log only */ }
}

/** The groups' targets as the status page shows them: ready, or why a request would pass them over. */
export function groupStatus(
  groups: ReadonlyMap<string, ServedGroup>,
): (now: number) => GroupStatus[] {
  return (now) =>
    [...groups.values()].map(({ group, runtimes }) => ({
      name: group.name,
      switchAfterMs: group.switchAfterMs,
      targets: group.targets.map((t, i) => {
        const skip = whyNot(runtimes[i], now, group.switchAfterMs);
        const until = skip && Number.isFinite(skip.untilMs)
          ? new Date(skip.untilMs).toISOString()
          : undefined;
        return { target: targetName(t), state: skip?.reason ?? "ready", until };
      }),
    }));
}
