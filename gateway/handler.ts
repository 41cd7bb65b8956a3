import { admit } from "./stages/admit.ts";
import { attempt } from "./stages/attempt.ts";
import { authenticate } from "./stages/authenticate.ts";
import { clientCredential, timingSafeEqual } from "./stages/auth.ts";
import { readBody } from "./stages/body.ts";
import { corsHeaders, preflight } from "./cors.ts";
import { badRequest, disguise } from "./disguise.ts";
import { gatewayErrors } from "./error_catalogue.ts";
import { errorResponse } from "./errors.ts";
import { type Exchange, newExchange } from "./exchange.ts";
import { appendGatewayHeaders, readClientHead } from "./headers.ts";
import { createStageDeps, type HandlerDeps, type StageDeps } from "./stage_deps.ts";
import { requestId } from "../lib/request_id.ts";
import { answer } from "./stages/respond.ts";
import {
  type RequestTarget,
  requestTarget,
  type Route,
  RouteCache,
  serviceName,
} from "./stages/route.ts";
import { ShapeKeeper } from "./v8_shapes.ts";
import { checkScope, enterTeam, listsModels } from "./stages/team_stages.ts";
import type { Bytes } from "./stages/body.ts";
import { bodyForTarget, nextTarget, startGroupWalk } from "./stages/group_stage.ts";
import {
  groupModels,
  markTarget,
  NEXT_TARGET,
  servedGroups,
  switchTarget,
} from "./stages/group_serve.ts";
import { adminApi, isAdminPath } from "./admin/admin_api.ts";
import { clientAddress } from "./stages/login_guard.ts";
import { tokenSha256 } from "../teams/mod.ts";

export type { HandlerDeps } from "./stage_deps.ts";

/**
 * The request pipeline. A request on a service path walks the stages, each
 * of which may answer early:
 *
 * authenticate → route → read the body → (a team's request: scope → its
 * budget, own pacing and fair share) → admit (an in-flight slot) →
 * attempt (pick a key → take a token → call the upstream → classify; a
 * retryable outcome goes back to pick a key) → respond → account.
 *
 * Any other path is the nginx disguise (or, with the password, a 404 that
 * names the services). While the instance drains, a service path answers
 * 503 `gateway_closing`.
 */
export function createHandler(
  deps: HandlerDeps,
): (req: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  const p = createStageDeps(deps);
  const routes = new RouteCache(deps.config.services);
  const shapes = new ShapeKeeper();
  const groups = servedGroups(deps.config.groups, deps.runtimes);
  const prefixes = [...deps.runtimes.keys(), ...groups.keys()].map((n) => `/${n}`).join(", ");

  /**
   * Counts every request on a service path as in flight until its response
   * is over (the server says when; in process, when the handler answers and
   * any stream it relays has ended), so that a drain can wait for it.
   */
  return function handle(req: Request, info?: Deno.ServeHandlerInfo): Promise<Response> {
    const target = requestTarget(req.url);
    if (isAdminPath(target.path)) return adminApi(p, req, target, info);
    const name = serviceName(target.path);
    const group = deps.runtimes.has(name) ? undefined : groups.get(name);
    const rt = deps.runtimes.get(name) ?? group?.runtimes[0];
    if (!rt) return Promise.resolve(unknownService(p, req, target, prefixes, info));
    const done = p.drain.begin();
    const x = newExchange(req, target, rt, p.clock.now(), p.config, info);
    if (group) x.group = startGroupWalk(group, target.path);
    p.lifecycle?.touch(x.started);
    if (info) {
      info.completed.then(done, done);
      return serve(p, routes, shapes, x);
    }
    const answered = serve(p, routes, shapes, x);
    answered.then(done, done);
    return answered;
  };
}

/** Methods `fetch` refuses to send: answered 405 before any key is charged for them. */
const UNSENDABLE = new Set(["CONNECT", "TRACE", "TRACK"]);

/**
 * The walk of one request on a service path. The body's bytes count against
 * the instance's budget from the moment they are read until every attempt
 * has sent them (or none will).
 */
async function serve(
  p: StageDeps,
  routes: RouteCache,
  shapes: ShapeKeeper,
  x: Exchange,
): Promise<Response> {
  let r = checkRequest(p, routes, x, false);
  while (r instanceof Promise) {
    // The teams' view was too old to decide on (an instance woken from sleep): read first.
    await r;
    x.now = p.clock.now();
    r = checkRequest(p, routes, x, true);
  }
  if (r instanceof Response) return r;
  // Read the body whole: a retry must be able to send it again.
  const read = await readBody(x.req, p.config.maxBodyBytes, x.head.contentLength, p.bodies);
  if (!read.ok) return answer(p, x, unreadable(p, read.reason));
  try {
    for (;;) {
      const body = x.group ? bodyForTarget(x.group, read.body) : read.body;
      const response = await serveOnService(p, x, r, body);
      if (response !== NEXT_TARGET) {
        if (x.group) markTarget(x, response);
        shapes.keep(x, response, x.upstream?.body, x.info, x.req);
        return response;
      }
      // A group's target failed before any byte went to the client: the next one is tried.
      const next = switchTarget(p, routes, x);
      if (next instanceof Response) return next;
      r = next;
    }
  } finally {
    if (read.held > 0) p.bodies.give(read.held);
  }
}

/**
 * The stages on one service: a team's scope, budget, own pacing and fair
 * share, the service's slot, then the attempts. {@linkcode NEXT_TARGET}
 * when a group's target failed and another may answer.
 */
async function serveOnService(
  p: StageDeps,
  x: Exchange,
  r: Route,
  body: Bytes | undefined,
): Promise<Response | typeof NEXT_TARGET> {
  if (x.team) {
    x.now = p.clock.now();
    const entered = checkScope(x, r, body) ?? enterTeam(p, x);
    const denied = entered instanceof Promise ? await entered : entered;
    if (denied) return answer(p, x, denied);
  }
  const admitted = admit(p, x);
  const slot = admitted instanceof Promise ? await admitted : admitted;
  if (!slot.ok) {
    return answer(p, x, gatewayErrors.refused(slot.reason, x.rt.service.name, slot.retryAfterMs));
  }
  x.slot = slot.release;
  try {
    return await attempt(p, x, r, body);
  } catch (e) {
    p.log({ id: x.id, service: x.rt.service.name, event: "internal_error", error: String(e) });
    return answer(p, x, gatewayErrors.internal());
  }
}

/**
 * The stages before the body: a Host that would move the path, the
 * preflight, who is asking (a stranger sees the disguise), the drain,
 * methods never forwarded, the route, and whether the service has keys.
 * The route, or the answer; or, before `viewChecked`, what to wait for
 * before asking again (the teams are being read: see authenticate.ts).
 */
function checkRequest(
  p: StageDeps,
  routes: RouteCache,
  x: Exchange,
  viewChecked: boolean,
): Route | Response | Promise<void> {
  if (x.head.badHost) return badRequest(x.req.method);
  if (x.req.method === "OPTIONS") return preflight(x.req);
  const denied = authenticate(p, x, viewChecked);
  if (denied instanceof Promise) return denied;
  // No credential at all: a stranger, who sees what any other path shows.
  if (denied?.code === "missing_api_key") return disguise(x.target.path, x.req.method);
  if (p.drain.closing) return answer(p, x, gatewayErrors.closing());
  if (denied) return answer(p, x, denied);
  if (UNSENDABLE.has(x.req.method)) {
    return answer(p, x, gatewayErrors.methodNotAllowed(x.req.method));
  }
  if (x.group) {
    if (listsModels(x)) return groupModels(p, x, x.group);
    const out = nextTarget(x, x.group, p.clock.now());
    if (out) return answer(p, x, out);
  }
  const r = routes.route(x.target, x.style);
  if ("error" in r) {
    const message = r.error === "bad_path" ? r.message : "Unknown service.";
    return answer(p, x, gatewayErrors.invalidPath(message));
  }
  if (x.rt.pool.keys.length === 0) {
    return answer(p, x, gatewayErrors.noKeys(x.rt.service.name, x.rt.service.envKey));
  }
  return r;
}

function unreadable(p: StageDeps, reason: "too_large" | "unreadable" | "busy") {
  if (reason === "too_large") return gatewayErrors.tooLarge(p.config.maxBodyBytes);
  return reason === "busy" ? gatewayErrors.busy() : gatewayErrors.unreadableBody();
}

/**
 * The handler while the gateway is still being built (KV not answered
 * yet): a path that is no service and not the admin's is the disguise at
 * once, as always; any other request waits for the gateway, then walks as usual.
 */
export function startingHandler(
  prefixes: readonly string[],
  built: Promise<{ handler: (req: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> }>,
): (req: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response> {
  const known = new Set(prefixes);
  return (req, info) => {
    const { path } = requestTarget(req.url);
    const name = serviceName(path);
    if (!known.has(name) && !isAdminPath(path)) return disguise(path, req.method);
    return built.then((g) => g.handler(req, info));
  };
}

/** A path that names no service: the disguise, or with the password a 404 naming the services. */
function unknownService(
  p: StageDeps,
  req: Request,
  target: RequestTarget,
  prefixes: string,
  info: Deno.ServeHandlerInfo | undefined,
): Response {
  const head = readClientHead(req.headers);
  if (head.badHost) return badRequest(req.method);
  const password = p.config.password;
  const cred = clientCredential(head, target.search, "openai");
  if (cred === undefined) return disguise(target.path, req.method);
  const now = p.clock.now();
  const right = password !== undefined && timingSafeEqual(cred, password);
  // The address is read only where it is needed: a guard that counts, or a wrong credential.
  const address = p.logins.watching || !right
    ? clientAddress(req, info, p.config.clientAddressHeader)
    : "";
  if (p.logins.watching && p.logins.shutOutFor(address, now) > 0) {
    return disguise(target.path, req.method);
  }
  if (!right) {
    // A wrong credential here is a guess too: the answer would tell it right from wrong.
    if (p.teams?.registry.byHash(tokenSha256(cred)) === undefined) {
      p.logins.refused(address, cred, now);
    }
    return disguise(target.path, req.method);
  }
  return errorResponse(
    "openai",
    gatewayErrors.unknownService(serviceName(target.path), prefixes),
    appendGatewayHeaders([], requestId(), corsHeaders(head.origin, req.method)),
  );
}
