/**
 * What a team is, and the one validator of its fields: the config loader
 * and the admin API both call {@linkcode parseTeamFields}, so a field is
 * refused with the same words wherever it is set.
 *
 * @module
 */
import type { DailyBudget } from "../limiter/mod.ts";

/** A team's own pacing on one service (or on every service, under `"*"`). */
export interface TeamLimits {
  rps: number;
  burst: number;
  maxConn: number;
}

/** A team's settings, as declared (config) or stored (admin API). */
export interface TeamSettings {
  /** Allowed service names; undefined = all. */
  services?: string[];
  /** Allowed model patterns (`*` matches any run of characters); undefined = all. */
  models?: string[];
  /**
   * Allowed endpoints, `[METHOD ]/path` under the service's prefix (`*`
   * matches any run of characters; no method: GET and POST; `"*"` alone:
   * everything). Undefined = {@linkcode DEFAULT_TEAM_PATHS}.
   */
  paths?: string[];
  /** Share of a saturated service relative to other teams. Default 1. */
  weight: number;
  /** Own pacing per service name, or `"*"` for every service. */
  limits: Record<string, TeamLimits>;
  daily: DailyBudget;
}

/** A team the gateway knows: its settings, where it was declared, and its token's hash. */
export interface Team extends TeamSettings {
  name: string;
  source: "config" | "api";
  /** Hex SHA-256 of the team's token. Never shown whole. */
  tokenSha256: string;
}

/** A team field that is not valid; `field` names it (`weight`, `limits.groq.rps`). */
export class TeamFieldError extends Error {
  override name = "TeamFieldError";
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field} ${message}`);
    this.field = field;
  }
}

/** A team name: what the log line, the admin API path and KV keys carry. */
export const TEAM_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
/** The name the password is counted under; no team may take it. */
export const ADMIN_TEAM = "admin";
const SETTING_FIELDS = ["services", "models", "paths", "weight", "limits", "daily"] as const;

/**
 * The endpoints a team may call when it names none: inference and model
 * lists. Not files, batches, fine-tunes, assistants, vector stores, stored
 * responses, cached contents or organization endpoints: those hold the
 * key owner's objects, which every team sharing the key would share.
 */
export const DEFAULT_TEAM_PATHS: readonly string[] = Object.freeze([
  "POST /v1/chat/completions",
  "POST /v1/completions",
  "POST /v1/responses",
  "POST /v1/embeddings",
  "POST /v1/messages",
  "POST /v1/messages/count_tokens",
  "GET /v1/models",
  "GET /v1/models/*",
  "GET /v1beta/models",
  "GET /v1beta/models/*",
  "POST /v1beta/models/*:generateContent",
  "POST /v1beta/models/*:streamGenerateContent",
  "POST /v1beta/models/*:countTokens",
  "POST /v1beta/models/*:embedContent",
  "POST /v1beta/models/*:batchEmbedContents",
]);

const PATH_PATTERN = /^(?:(?:GET|POST|PUT|PATCH|DELETE|\*) )?\/[\x21-\x7e]*$/;
const HEX_SHA256 = /^[0-9a-f]{64}$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

function positive(field: string, v: unknown, integer: boolean): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new TeamFieldError(
      field,
      `must be ${integer ? "a positive integer" : "a positive number"} (got ${show(v)})`,
    );
  }
  return v;
}

function stringList(field: string, v: unknown, check?: (s: string) => string | undefined) {
  if (!Array.isArray(v) || v.length === 0 || v.some((s) => typeof s !== "string" || s === "")) {
    throw new TeamFieldError(field, `must be a non-empty list of strings (got ${show(v)})`);
  }
  for (const s of v as string[]) {
    const problem = check?.(s);
    if (problem) throw new TeamFieldError(field, problem);
  }
  return [...new Set(v as string[])];
}

/** What the validator needs to know of the gateway. */
export interface TeamContext {
  /** Service names and their limits: a team's limits may not exceed its service's. */
  services: Readonly<Record<string, TeamLimits>>;
  /** Model group names: a team's `services` may name them too. Default none. */
  groups?: readonly string[];
}

function parseLimits(v: unknown, ctx: TeamContext): Record<string, TeamLimits> {
  if (!isRecord(v)) throw new TeamFieldError("limits", `must be an object (got ${show(v)})`);
  const out: Record<string, TeamLimits> = {};
  for (const [svc, raw] of Object.entries(v)) {
    const where = `limits.${svc}`;
    if (svc !== "*" && !Object.hasOwn(ctx.services, svc)) {
      throw new TeamFieldError(where, `names no service (known: ${Object.keys(ctx.services)})`);
    }
    if (!isRecord(raw)) throw new TeamFieldError(where, `must be an object (got ${show(raw)})`);
    for (const k of Object.keys(raw)) {
      if (k !== "rps" && k !== "burst" && k !== "maxConn") {
        throw new TeamFieldError(
          `${where}.${k}`,
          "is not a known field (known: rps, burst, maxConn)",
        );
      }
    }
    const limits: Partial<TeamLimits> = {};
    if (raw.rps !== undefined) limits.rps = positive(`${where}.rps`, raw.rps, false);
    if (raw.burst !== undefined) limits.burst = positive(`${where}.burst`, raw.burst, true);
    if (raw.maxConn !== undefined) limits.maxConn = positive(`${where}.maxConn`, raw.maxConn, true);
    // Never above the service's own: checked against each service it applies to.
    for (const [name, cap] of Object.entries(ctx.services)) {
      if (svc !== "*" && svc !== name) continue;
      for (const k of ["rps", "burst", "maxConn"] as const) {
        const value = limits[k];
        if (value !== undefined && value > cap[k] && svc !== "*") {
          throw new TeamFieldError(
            `${where}.${k}`,
            `must not exceed the service's own ${k} (${cap[k]}; got ${value})`,
          );
        }
      }
    }
    out[svc] = limits as TeamLimits;
  }
  return out;
}

function parseDaily(v: unknown): DailyBudget {
  if (!isRecord(v)) throw new TeamFieldError("daily", `must be an object (got ${show(v)})`);
  const out: DailyBudget = {};
  for (const [k, n] of Object.entries(v)) {
    if (k !== "requests" && k !== "tokens") {
      throw new TeamFieldError(`daily.${k}`, "is not a known field (known: requests, tokens)");
    }
    out[k] = positive(`daily.${k}`, n, true);
  }
  return out;
}

/**
 * Validates a team's settings (every field optional; `base` gives the
 * values not in `raw`, as for a PATCH). Unknown fields are refused, except
 * those listed in `allow` (the caller's own, such as `name` or `token`).
 *
 * @throws {TeamFieldError} naming the field and the problem.
 */
export function parseTeamFields(
  raw: unknown,
  ctx: TeamContext,
  options: { base?: TeamSettings; allow?: readonly string[] } = {},
): TeamSettings {
  if (!isRecord(raw)) throw new TeamFieldError("team", `must be a JSON object (got ${show(raw)})`);
  const allow = options.allow ?? [];
  for (const k of Object.keys(raw)) {
    if (!(SETTING_FIELDS as readonly string[]).includes(k) && !allow.includes(k)) {
      throw new TeamFieldError(k, `is not a known field (known: ${SETTING_FIELDS.join(", ")})`);
    }
  }
  const base = options.base ?? { weight: 1, limits: {}, daily: {} };
  const out: TeamSettings = structuredClone(base);
  if (raw.services !== undefined) {
    out.services = stringList(
      "services",
      raw.services,
      (s) =>
        Object.hasOwn(ctx.services, s) || ctx.groups?.includes(s)
          ? undefined
          : `names no service or group: "${s}" (known: ${
            [...Object.keys(ctx.services), ...(ctx.groups ?? [])].join(", ")
          })`,
    );
  }
  if (raw.models !== undefined) out.models = stringList("models", raw.models);
  if (raw.paths !== undefined) {
    out.paths = stringList(
      "paths",
      raw.paths,
      (p) =>
        p === "*" || PATH_PATTERN.test(p)
          ? undefined
          : `entries must be "*" or "[METHOD ]/path" like "POST /v1/chat/completions" (got ${
            show(p)
          })`,
    );
  }
  if (raw.weight !== undefined) out.weight = positive("weight", raw.weight, false);
  if (raw.limits !== undefined) out.limits = parseLimits(raw.limits, ctx);
  if (raw.daily !== undefined) out.daily = parseDaily(raw.daily);
  return out;
}

/** Checks a team name; the message names the rule. */
export function checkTeamName(name: unknown): string {
  if (typeof name !== "string" || !TEAM_NAME.test(name)) {
    throw new TeamFieldError("name", `must match ${TEAM_NAME} (got ${show(name)})`);
  }
  if (name === ADMIN_TEAM) throw new TeamFieldError("name", `"${ADMIN_TEAM}" is the password's`);
  return name;
}

/** Checks a `tokenSha256` field: 64 hex digits. */
export function checkTokenSha256(v: unknown): string {
  if (typeof v !== "string" || !HEX_SHA256.test(v.toLowerCase())) {
    throw new TeamFieldError("tokenSha256", "must be 64 hex digits (the token's SHA-256)");
  }
  return v.toLowerCase();
}

/**
 * The team's pacing on `service` merged over its `"*"` pacing, each field
 * capped by the service's own; undefined when the team has none there.
 */
export function teamLimitsFor(
  team: TeamSettings,
  service: string,
  cap: TeamLimits,
): TeamLimits | undefined {
  const own = team.limits[service];
  const all = team.limits["*"];
  if (!own && !all) return undefined;
  const merged = { ...all, ...own };
  return {
    rps: Math.min(merged.rps ?? cap.rps, cap.rps),
    burst: Math.min(merged.burst ?? cap.burst, cap.burst),
    maxConn: Math.min(merged.maxConn ?? cap.maxConn, cap.maxConn),
  };
}
