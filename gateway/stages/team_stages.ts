import type { BudgetVerdict, ScopeLimiter, WaitOptions } from "../../limiter/mod.ts";
import {
  DEFAULT_TEAM_PATHS,
  endpointAllowed,
  type GatePass,
  modelAllowed,
  type Team,
} from "../../teams/mod.ts";
import { estimateTokens } from "../../providers/mod.ts";
import type { Bytes } from "./body.ts";
import { gatewayErrors } from "../error_catalogue.ts";
import type { GatewayError } from "../errors.ts";
import type { Exchange } from "../exchange.ts";
import type { TeamPass } from "./team_pass.ts";
import type { StageDeps } from "../stage_deps.ts";
import type { Route } from "./route.ts";

/**
 * How a request waits in a limiter's queues: until its deadline, as its
 * team (turns by weight) and lane (interactive before bulk); `retry` goes first.
 */
export function waitOptions(x: Exchange, retry: boolean): WaitOptions {
  const pass = x.team;
  return {
    deadline: x.deadline,
    signal: x.req.signal,
    priority: retry,
    team: pass?.team.name,
    // Held back at the gate, a team is weighed by its pace here (see FairGate.paceOf).
    weight: pass === undefined ? undefined : x.rt.gate?.paceOf(pass.team.name) ?? pass.team.weight,
    bulk: pass?.bulk,
  };
}

/** The password's team: every service, no limits, no budget. */
export const ADMIN: Team = Object.freeze({
  name: "admin",
  source: "config",
  tokenSha256: "",
  weight: 1,
  limits: {},
  daily: {},
}) as Team;

/** A new pass for a request of `team`. */
export function teamPass(team: Team, bulk: boolean): TeamPass {
  return {
    team,
    bulk,
    requestBytes: 0,
    limiter: undefined,
    releaseSlot: undefined,
    inGate: false,
    left: false,
    charged: false,
  };
}

/** The model a request names: the JSON body's `model`, or gemini's `models/<model>:…` path. */
export function requestedModel(r: Route, body: Bytes | undefined): string | undefined {
  if (r.geminiNative) {
    const m = /\/models\/([^/:?]+)/.exec(r.upstream);
    if (m) return decodeURIComponent(m[1]);
  }
  if (body === undefined || body.byteLength === 0) return undefined;
  try {
    const text = new TextDecoder().decode(body);
    const parsed = JSON.parse(text);
    if (typeof parsed?.model !== "string") return undefined;
    // JSON.parse keeps the last of two "model"s, a provider's parser may keep the first: refuse both.
    return countTopLevelKey(text, "model") > 1 ? undefined : parsed.model;
  } catch {
    return undefined;
  }
}

/** How often `key` names a member of the top-level object of valid JSON `text`. */
export function countTopLevelKey(text: string, key: string): number {
  let depth = 0;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b || c === 0x5b) depth++; // { [
    else if (c === 0x7d || c === 0x5d) depth--; // } ]
    else if (c === 0x22) { // a string: find its end, past escapes
      let end = i + 1;
      while (text.charCodeAt(end) !== 0x22) end += text.charCodeAt(end) === 0x5c ? 2 : 1;
      if (depth === 1 && /^\s*:/.test(text.slice(end + 1, end + 16))) {
        if (JSON.parse(text.slice(i, end + 1)) === key) n++;
      }
      i = end;
    }
  }
  return n;
}

/** True for a request listing models (`GET …/models`), whose answer a team sees filtered. */
export function listsModels(x: Exchange): boolean {
  return x.req.method === "GET" && /\/models\/?$/.test(x.target.path);
}

/**
 * The scope stage: a team may use only its services, its endpoints (by
 * default the inference ones, see `DEFAULT_TEAM_PATHS`) and, when it has a
 * model list, only those models (a request whose model cannot be read is
 * refused too). Nothing reaches the upstream when it answers.
 */
export function checkScope(
  x: Exchange,
  r: Route,
  body: Bytes | undefined,
): GatewayError | undefined {
  const pass = x.team;
  if (pass === undefined) return undefined;
  const { team } = pass;
  pass.requestBytes = body?.byteLength ?? 0;
  const service = x.rt.service.name;
  // A model group is allowed by its own name: its targets are reached through it.
  const scope = x.group?.served.group.name ?? service;
  if (team.services !== undefined && !team.services.includes(scope)) {
    const what = x.group ? `the group ${scope}` : `the service ${service}`;
    return gatewayErrors.teamForbidden(team.name, what, team.services);
  }
  if (team !== ADMIN) {
    const path = x.target.path.slice(service.length + 1);
    if (!endpointAllowed(team.paths ?? DEFAULT_TEAM_PATHS, x.req.method, path)) {
      return gatewayErrors.teamEndpointForbidden(
        team.name,
        `${x.req.method} ${path}`,
        service,
        team.paths,
      );
    }
  }
  if (team.models === undefined || listsModels(x)) return undefined;
  const model = requestedModel(r, body);
  if (model === undefined) {
    return gatewayErrors.teamForbidden(
      team.name,
      "a request that does not name exactly one model",
      team.models,
    );
  }
  if (!modelAllowed(team.models, model)) {
    return gatewayErrors.teamForbidden(team.name, `the model ${model}`, team.models);
  }
  return undefined;
}

/**
 * The team stage, before the service's own admission: the daily budget
 * (known spent: 429 at once), the team's own pacing (its in-flight slot;
 * tokens are taken per attempt), then its fair share of the service.
 */
export function enterTeam(
  p: StageDeps,
  x: Exchange,
): GatewayError | undefined | Promise<GatewayError | undefined> {
  const pass = x.team!;
  const { team } = pass;
  const verdict = p.teams?.budgets.check(team, x.now);
  if (verdict !== undefined && !verdict.ok) {
    return gatewayErrors.budgetExhausted(team.name, verdict.retryAfterMs, verdict.resetsAt);
  }
  const own = x.rt.teams?.for(team, team !== ADMIN);
  if (own === undefined) return enterGate(x);
  // The usual request finds the team's slot free: no promise is made.
  const slot = own.trySlot(x.now);
  if (slot === undefined) return waitForTeamSlot(x, own);
  if (!slot.ok) return gatewayErrors.teamRefused(slot.reason, team.name, slot.retryAfterMs);
  pass.releaseSlot = slot.release;
  if (x.rt.teams!.pacesTokens(own)) pass.limiter = own;
  return enterGate(x);
}

async function waitForTeamSlot(x: Exchange, own: ScopeLimiter) {
  const pass = x.team!;
  const slot = await own.acquireSlot(waitOptions(x, false));
  if (!slot.ok) return gatewayErrors.teamRefused(slot.reason, pass.team.name, slot.retryAfterMs);
  pass.releaseSlot = slot.release;
  if (x.rt.teams!.pacesTokens(own)) pass.limiter = own;
  return enterGate(x);
}

/** The team's fair share of the service: passes at once unless the service is saturated. */
function enterGate(x: Exchange): GatewayError | undefined | Promise<GatewayError | undefined> {
  const gate = x.rt.gate;
  if (gate === undefined) return undefined;
  const pass = x.team!;
  pass.inGate = true;
  const entered = gate.enter(pass.team.name, pass.team.weight, pass.bulk, x.deadline, x.req.signal);
  return entered instanceof Promise
    ? entered.then((g) => gateRefusal(x, g))
    : gateRefusal(x, entered);
}

function gateRefusal(x: Exchange, passed: GatePass): GatewayError | undefined {
  return passed.ok
    ? undefined
    : gatewayErrors.refused(passed.reason, x.rt.service.name, passed.retryAfterMs);
}

/**
 * Before each attempt of a team's request, ahead of the service's token: a
 * token of the team's own pacing (each attempt takes one, as of the
 * service's). Answers why not, or nothing.
 */
export function teamToken(
  p: StageDeps,
  x: Exchange,
  retry: boolean,
): GatewayError | undefined | Promise<GatewayError | undefined> {
  const own = x.team!.limiter;
  // The usual request finds a token at once: no promise is made.
  if (own === undefined || own.tryToken(x.now)) return undefined;
  return waitForTeamToken(p, x, own, retry);
}

async function waitForTeamToken(
  p: StageDeps,
  x: Exchange,
  own: ScopeLimiter,
  retry: boolean,
): Promise<GatewayError | undefined> {
  const pass = x.team!;
  const token = await own.takeToken(waitOptions(x, retry));
  if (!token.ok) return gatewayErrors.teamRefused(token.reason, pass.team.name, token.retryAfterMs);
  x.now = p.clock.now();
  return undefined;
}

/**
 * Just before each attempt of a team's request is sent: one request of its
 * daily budget (requests count when sent, retries included; a model
 * group's request counts once, whichever targets it tried). Answers why
 * not, or nothing; then the request leaves the fair gate's backlog.
 */
export function spendBudget(
  p: StageDeps,
  x: Exchange,
): GatewayError | undefined | Promise<GatewayError | undefined> {
  const pass = x.team!;
  if (pass.charged && x.group !== undefined) return afterSpend(x, undefined);
  pass.charged = true;
  const spent = p.teams?.budgets.spend(pass.team, x.now);
  if (spent instanceof Promise) return spent.then((v) => afterSpend(x, v));
  return afterSpend(x, spent);
}

function afterSpend(x: Exchange, verdict: BudgetVerdict | undefined): GatewayError | undefined {
  if (verdict !== undefined && !verdict.ok) {
    return gatewayErrors.budgetExhausted(x.team!.team.name, verdict.retryAfterMs, verdict.resetsAt);
  }
  sentUpstream(x);
  return undefined;
}

/** The request goes upstream: it leaves the fair gate's backlog. */
export function sentUpstream(x: Exchange): void {
  const pass = x.team;
  if (pass?.inGate) {
    pass.inGate = false;
    x.rt.gate?.sent(pass.team.name);
  }
}

/**
 * The request is over: the team's slot goes back, and the tokens of a
 * successful answer are added to its day (as reported, or estimated).
 */
export function leaveTeam(p: StageDeps, x: Exchange, status: number, bytes: number | undefined) {
  const pass = x.team;
  if (pass === undefined || pass.left) return;
  pass.left = true;
  sentUpstream(x);
  pass.releaseSlot?.();
  if (x.attempts > 0 && status < 400 && p.teams) {
    const tokens = x.usedTokens ?? estimateTokens(pass.requestBytes, bytes ?? 0);
    p.teams.budgets.addTokens(pass.team.name, tokens);
  }
}
