import { type Team, TeamChangeError, TeamFieldError, tokenSha256 } from "../../teams/mod.ts";
import { readBody } from "../stages/body.ts";
import { clientAddress } from "../stages/login_guard.ts";
import { hashId } from "../../teams/mod.ts";
import { basicPassword, clientCredential, timingSafeEqual } from "../stages/auth.ts";
import { badRequest, basicChallenge, disguise } from "../disguise.ts";
import { STATUS_PAGE } from "../../status/mod.ts";
import { readClientHead } from "../headers.ts";
import type { StageDeps, TeamServices } from "../stage_deps.ts";
import type { RequestTarget } from "../stages/route.ts";
import { decodeSegment, json, problem } from "./admin_reply.ts";
import { adminAction } from "./admin_actions.ts";

const PREFIX = "/_kvgate";
const TEAMS = /^\/_kvgate\/teams(?:\/([^/]+)(\/rotate)?)?\/?$/;
const MAX_BODY = 64 * 1024;
const STATUS = "/_kvgate/status";
const METRICS = "/_kvgate/metrics";

/** True for a path of the admin API (`/_kvgate` and below). */
export function isAdminPath(path: string): boolean {
  return path === PREFIX || path.startsWith(PREFIX + "/");
}

/** A team as the admin API shows it: its settings and a short id of its token's hash, never more. */
function shown(team: Team, usage?: unknown) {
  return {
    name: team.name,
    source: team.source,
    services: team.services ?? "*",
    models: team.models ?? "*",
    paths: team.paths ?? "default",
    weight: team.weight,
    limits: team.limits,
    daily: team.daily,
    tokenId: hashId(team.tokenSha256),
    ...(usage === undefined ? {} : { usageToday: usage }),
  };
}

/** The admin's JSON body, read to at most 64 KiB (refused past it before more is read). */
async function readJson(req: Request): Promise<unknown> {
  if (!/^application\/json\b/i.test(req.headers.get("content-type") ?? "")) {
    throw new TeamFieldError("body", "must be sent as content-type: application/json");
  }
  const read = await readBody(req, MAX_BODY);
  if (!read.ok) throw new TeamFieldError("body", `is larger than ${MAX_BODY} bytes`);
  try {
    return JSON.parse(new TextDecoder().decode(read.body ?? new Uint8Array()));
  } catch {
    throw new TeamFieldError("body", "is not valid JSON");
  }
}

/** The status page's headers: no caching, no outside assets, never framed, no sniffing. */
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy":
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/**
 * The admin's credential: ADMIN_PASSWORD, or ACCESS_PASSWORD where no
 * ADMIN_PASSWORD is set and `accessPasswordAdmin` allows it.
 */
function adminCredential(p: StageDeps): string | undefined {
  const c = p.config;
  return c.adminPassword ?? (c.accessPasswordAdmin ? c.password : undefined);
}

/**
 * Whether a state-changing request signed with Basic (which a browser
 * sends by itself, to any site's form) comes from the page itself: the
 * browser says `Sec-Fetch-Site: same-origin`, or its `Origin` is this
 * host, or it carries `x-kvgate-admin` (a header no form can send, and no
 * other site can without a preflight, which is refused).
 */
function sameSite(req: Request): boolean {
  const site = req.headers.get("sec-fetch-site");
  if (site !== null) return site === "same-origin" || site === "none";
  const origin = req.headers.get("origin");
  if (origin !== null) {
    try {
      return new URL(origin).host === req.headers.get("host");
    } catch {
      return false;
    }
  }
  return req.headers.has("x-kvgate-admin");
}

/**
 * The admin API, for ACCESS_PASSWORD only (as a Bearer token, or the
 * password of HTTP Basic auth from a browser): to anyone else (a team token
 * included) every `/_kvgate/…` path is the nginx disguise's 404, and the
 * status page at `/_kvgate/` is nginx's own Basic-auth 401.
 *
 * - `GET /_kvgate/`: the status page (see `status/page.ts`);
 * - `GET /_kvgate/teams`: every team, with today's usage;
 * - `POST /_kvgate/teams`: a new team; its token is in the answer, once;
 * - `PATCH /_kvgate/teams/<name>`, `POST /_kvgate/teams/<name>/rotate`,
 *   `DELETE /_kvgate/teams/<name>`;
 * - `GET /_kvgate/status`: the deployment's status (see `status/board.ts`);
 * - `GET /_kvgate/metrics`: Prometheus text; also for `METRICS_TOKEN`;
 * - the actions of `admin_actions.ts` (enable a key, pause or resume a service).
 */
export async function adminApi(
  p: StageDeps,
  req: Request,
  target: RequestTarget,
  info?: Deno.ServeHandlerInfo,
) {
  const head = readClientHead(req.headers);
  if (head.badHost) return badRequest(req.method);
  const bearer = clientCredential(head, "", "openai");
  const cred = bearer ?? basicPassword(head.authorization);
  const admin = cred !== undefined && isAdmin(p, req, info, cred);
  const page = target.path === PREFIX || target.path === PREFIX + "/";
  if (target.path === METRICS && req.method === "GET" && p.status) {
    const token = p.config.metricsToken;
    const scraper = token !== undefined && cred !== undefined && timingSafeEqual(cred, token);
    if (admin || scraper) {
      return new Response(await p.status.metricsText(), {
        headers: { "content-type": "text/plain; version=0.0.4", "cache-control": "no-store" },
      });
    }
  }
  if (!admin) return page ? basicChallenge(req.method) : disguise(target.path, req.method);
  const reads = req.method === "GET" || req.method === "HEAD";
  if (!reads && bearer === undefined && !sameSite(req)) {
    p.log({ event: "admin_cross_site_refused", method: req.method, path: target.path });
    return problem(
      403,
      "cross_site_refused",
      "An admin action must come from the status page itself.",
    );
  }
  if (page && reads) {
    return new Response(req.method === "HEAD" ? null : STATUS_PAGE, { headers: PAGE_HEADERS });
  }
  if (target.path === STATUS && p.status) {
    if (req.method !== "GET") return problem(405, "method_not_allowed", "Use GET.");
    return json(200, await p.status.snapshot());
  }
  const acted = await adminAction(p, req, target.path);
  if (acted) return acted;
  return await teamsApi(p, req, target.path);
}

/** `/_kvgate/teams…`: the teams, one team, a team's new token; each mistake in its own answer. */
async function teamsApi(p: StageDeps, req: Request, path: string): Promise<Response> {
  const teams = p.teams;
  const m = TEAMS.exec(path);
  if (!m || !teams) return problem(404, "unknown_admin_path", `No admin API at ${path}.`);
  const name = m[1] === undefined ? undefined : decodeSegment(m[1]);
  if (m[1] !== undefined && name === undefined) {
    return problem(400, "invalid_path", "The team name in the path is not a valid escape.");
  }
  try {
    const answer = name === undefined
      ? await onTeams(p, teams, req)
      : m[2]
      ? await onRotate(p, teams, req, name)
      : await onTeam(p, teams, req, name);
    return answer ??
      problem(405, "method_not_allowed", `${req.method} is not allowed on ${path}.`);
  } catch (e) {
    if (e instanceof TeamFieldError) return problem(400, "invalid_team_field", e.message, e.field);
    if (e instanceof TeamChangeError) {
      if (e.kind === "unknown") return problem(404, "team_not_found", e.message);
      return problem(409, e.kind === "clash" ? "team_conflict" : "team_read_only", e.message);
    }
    p.log({ event: "admin_error", error: String(e) });
    return problem(503, "admin_unavailable", "The team store (KV) did not answer; retry.");
  }
}

/**
 * Whether `cred` is the admin's, from an address not shut out for guessing;
 * a wrong one is counted against the address and logged with it.
 */
function isAdmin(
  p: StageDeps,
  req: Request,
  info: Deno.ServeHandlerInfo | undefined,
  cred: string,
) {
  const now = p.clock.now();
  const expected = adminCredential(p);
  const right = expected !== undefined && timingSafeEqual(cred, expected);
  // The address is read only where it is needed: a guard that counts, or a wrong credential.
  const address = p.logins.watching || !right
    ? clientAddress(req, info, p.config.clientAddressHeader)
    : "";
  if (p.logins.watching && p.logins.shutOutFor(address, now) > 0) return false;
  if (right) return true;
  // The metrics token and a team token are not the admin's, but they are not guesses either.
  const token = p.config.metricsToken;
  if (token !== undefined && timingSafeEqual(cred, token)) return false;
  if (p.teams?.registry.byHash(tokenSha256(cred)) !== undefined) return false;
  if (p.config.password !== undefined && timingSafeEqual(cred, p.config.password)) return false;
  p.logins.refused(address, cred, now);
  p.log({ event: "admin_login_refused", client: address, path: new URL(req.url).pathname });
  return false;
}

/** `/_kvgate/teams`: GET lists every team with today's usage; POST makes one. */
async function onTeams(p: StageDeps, teams: TeamServices, req: Request) {
  if (req.method === "GET") {
    await teams.registry.fresh();
    const list = teams.registry.list();
    const usage = await teams.budgets.usageOf(list.map((t) => t.name)).catch(() => undefined);
    return json(200, { teams: list.map((t, i) => shown(t, usage?.[i] ?? "unavailable (KV)")) });
  }
  if (req.method !== "POST") return undefined;
  const raw = await readJson(req);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TeamFieldError("body", "must be a JSON object");
  }
  const made = await teams.registry.create(raw as Record<string, unknown>);
  p.log({ event: "team_created", team: made.team.name, tokenId: hashId(made.team.tokenSha256) });
  return json(201, { team: shown(made.team), token: made.token });
}

/** `/_kvgate/teams/<name>/rotate`: POST issues a new token. */
async function onRotate(p: StageDeps, teams: TeamServices, req: Request, name: string) {
  if (req.method !== "POST") return undefined;
  const made = await teams.registry.rotate(name);
  p.log({ event: "team_rotated", team: made.team.name, tokenId: hashId(made.team.tokenSha256) });
  return json(200, { team: shown(made.team), token: made.token });
}

/** `/_kvgate/teams/<name>`: GET, PATCH, DELETE. */
async function onTeam(p: StageDeps, teams: TeamServices, req: Request, name: string) {
  if (req.method === "PATCH") {
    const team = await teams.registry.patch(name, await readJson(req));
    p.log({ event: "team_changed", team: team.name });
    return json(200, { team: shown(team) });
  }
  if (req.method === "DELETE") {
    await teams.registry.delete(name);
    p.log({ event: "team_deleted", team: name });
    return json(204, undefined);
  }
  if (req.method !== "GET") return undefined;
  const team = teams.registry.get(name);
  if (!team) return problem(404, "team_not_found", `No team named "${name}".`);
  const usage = await teams.budgets.usage(team.name).catch(() => null);
  return json(200, { team: shown(team, usage) });
}
