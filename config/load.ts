import type { GatewaySettings, ServiceConfig } from "./defaults.ts";
import { parseDayStart } from "../limiter/mod.ts";
import { type ModelGroup, parseGroups } from "./groups.ts";
import {
  checkTeamName,
  checkTokenSha256,
  parseTeamFields,
  type Team,
  TeamFieldError,
} from "../teams/team.ts";
import { tokenSha256 } from "../teams/token.ts";
import { ConfigError, describe } from "./check.ts";
import { checkSettings, mergeLayers, readLayers } from "./layers.ts";

export { ConfigError } from "./check.ts";

/** A service ready for the gateway: its configuration plus the keys found for it. */
export interface Service extends ServiceConfig {
  /** Route prefix: the first path segment. */
  name: string;
  /** Provider keys, trimmed, without empties or duplicates. Never logged. */
  keys: string[];
  /** `dayResetsAt` in ms after UTC midnight. */
  dayResetMs: number;
}

/** Everything the gateway needs, validated. */
export interface GatewayConfig extends GatewaySettings {
  services: Record<string, Service>;
  /** ACCESS_PASSWORD, or undefined when unset: the clients' credential. */
  password: string | undefined;
  /**
   * ADMIN_PASSWORD, or undefined when unset: the admin API's and status
   * page's credential, and nothing else's. Without it, ACCESS_PASSWORD is
   * the admin's too, unless `accessPasswordAdmin` is false.
   */
  adminPassword: string | undefined;
  /**
   * METRICS_TOKEN: a Bearer token that may read `/_kvgate/metrics` (and
   * nothing else), so a scraper does not hold the admin password.
   */
  metricsToken: string | undefined;
  /** OTEL_DENO=true, or on Deno Deploy (DENO_DEPLOY=true): kvgate adds its GenAI metrics and spans to what Deno exports. */
  otel: boolean;
  port: number;
  /** KV_PATH: a file path, ":memory:", or a KV Connect URL; undefined = platform KV. */
  kvPath: string | undefined;
  /** True on Deno Deploy (DENO_DEPLOYMENT_ID set). */
  onDeploy: boolean;
  /** Teams declared in config, their tokens already hashed (the raw tokens are not kept). */
  teams: Team[];
  /** Model groups (`/<group>/v1/…`): ordered targets, each a service and its model. */
  groups: ModelGroup[];
  /** `dayStartsAt` in ms after UTC midnight. */
  dayStartMs: number;
}

/** Reads one environment variable; injectable so tests need no real environment. */
export type EnvReader = (name: string) => string | undefined;

/** Options for {@linkcode loadConfig}. */
export interface LoadConfigOptions {
  /** Reads a file named by GATEWAY_CONFIG_FILE. Default: `Deno.readTextFileSync`. */
  readFile?: (path: string) => string;
}

/**
 * The shortest secret accepted (passwords, METRICS_TOKEN, config team
 * tokens): 20 random characters are over 100 bits, out of reach of guessing
 * even at the unlimited rate a stolen hash allows.
 */
export const MIN_SECRET_LENGTH = 20;

/** `raw` trimmed, or undefined when empty; a ConfigError when shorter than {@linkcode MIN_SECRET_LENGTH}. */
function secret(name: string, raw: string | undefined): string | undefined {
  const v = raw?.trim();
  if (!v) return undefined;
  if (v.length < MIN_SECRET_LENGTH) {
    throw new ConfigError(
      `${name} must be at least ${MIN_SECRET_LENGTH} characters (got ${v.length}): use a random one, e.g. the output of \`openssl rand -base64 24\``,
    );
  }
  return v;
}

/** Splits a key list on commas and newlines; trims, drops empties and duplicates. */
export function parseKeyList(raw: string | undefined): string[] {
  if (!raw) return [];
  return [...new Set(raw.split(/[,\n\r]+/).map((k) => k.trim()).filter((k) => k !== ""))];
}

/**
 * Builds the gateway configuration from the environment: built-in services,
 * then GATEWAY_CONFIG_FILE, then GATEWAY_CONFIG merged over them.
 *
 * @throws {ConfigError} naming the service and field at fault.
 */
export function loadConfig(env: EnvReader, options: LoadConfigOptions = {}): GatewayConfig {
  const readFile = options.readFile ?? ((p: string) => Deno.readTextFileSync(p));
  const { settings, services, rawTeams, rawGroups } = mergeLayers(readLayers(env, readFile));
  const dayStartMs = checkSettings(settings);
  const groups = parseGroups(rawGroups, services);
  const groupNames = groups.map((g) => g.name);
  const teams = Object.entries(rawTeams).map(([name, raw]) =>
    configTeam(name, raw, services, groupNames)
  );
  const portText = env("PORT") ?? "8000";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`PORT must be a port number (got ${describe(portText)})`);
  }
  const onDeploy = !!env("DENO_DEPLOYMENT_ID");
  return {
    ...(settings as unknown as GatewaySettings),
    services: resolveServices(services, env),
    ...readSecrets(env, teams),
    // Deno Deploy's OpenTelemetry is always on (and forbids OTEL_* variables): so is kvgate's there.
    otel: env("OTEL_DENO") === "true" || env("OTEL_DENO") === "1" || env("DENO_DEPLOY") === "true",
    port,
    kvPath: env("KV_PATH") || (onDeploy ? undefined : "./data/kvgate.sqlite3"),
    onDeploy,
    teams,
    groups,
    dayStartMs,
  };
}

/** Deno Deploy sends SIGKILL this long after SIGINT, in ms. */
const DEPLOY_KILL_MS = 5000;
/** What kvgate's exit takes after the shutdown's budget at most (the last log lines), in ms. */
const EXIT_MARGIN_MS = 250;

/**
 * Settings that hold but will not do what they say where the instance runs,
 * one sentence each (logged as warnings at start): on Deno Deploy, a
 * `shutdownMs` that outlasts the 5 s between SIGINT and SIGKILL.
 */
export function settingWarnings(config: GatewayConfig): string[] {
  const warnings: string[] = [];
  if (config.onDeploy && config.shutdownMs + EXIT_MARGIN_MS > DEPLOY_KILL_MS) {
    warnings.push(
      `shutdownMs is ${config.shutdownMs}: Deno Deploy kills an instance ${DEPLOY_KILL_MS} ms after SIGINT, so the last hand-backs and writes of a shutdown may be cut. Keep it at ${
        DEPLOY_KILL_MS - EXIT_MARGIN_MS
      } or less there.`,
    );
  }
  return warnings;
}

/** Each service with its keys (from its `envKey`) and its day's reset in ms. */
function resolveServices(
  services: Readonly<Record<string, ServiceConfig>>,
  env: EnvReader,
): Record<string, Service> {
  const resolved: Record<string, Service> = {};
  for (const [name, svc] of Object.entries(services)) {
    resolved[name] = {
      name,
      ...svc,
      keys: parseKeyList(env(svc.envKey)),
      dayResetMs: parseDayStart(svc.dayResetsAt, "dayResetsAt"),
    };
  }
  return resolved;
}

/** The credentials, each long enough, and no two alike (a team's token included). */
function readSecrets(
  env: EnvReader,
  teams: readonly Team[],
): Pick<GatewayConfig, "password" | "adminPassword" | "metricsToken"> {
  const password = secret("ACCESS_PASSWORD", env("ACCESS_PASSWORD"));
  const adminPassword = secret("ADMIN_PASSWORD", env("ADMIN_PASSWORD"));
  const metricsToken = secret("METRICS_TOKEN", env("METRICS_TOKEN"));
  const hashes = new Map<string, string>();
  const named: Array<[string, string | undefined]> = [
    ["ACCESS_PASSWORD", password],
    ["ADMIN_PASSWORD", adminPassword],
    ["METRICS_TOKEN", metricsToken],
  ];
  for (const [name, value] of named) {
    if (value === undefined) continue;
    const clash = hashes.get(tokenSha256(value));
    if (clash) throw new ConfigError(`${name} must differ from ${clash}`);
    hashes.set(tokenSha256(value), name);
  }
  for (const t of teams) {
    const clash = hashes.get(t.tokenSha256);
    if (clash) {
      throw new ConfigError(`GATEWAY_CONFIG.teams.${t.name}.token is the same as ${clash}'s`);
    }
    hashes.set(t.tokenSha256, `team ${t.name}`);
  }
  return { password, adminPassword, metricsToken };
}

/**
 * A team declared in config: the same validator as the admin API's, plus
 * its token (hashed here; the raw token goes no further) or its hash.
 */
function configTeam(
  name: string,
  raw: unknown,
  services: Readonly<Record<string, ServiceConfig>>,
  groups: readonly string[],
): Team {
  const where = `GATEWAY_CONFIG.teams.${name}`;
  try {
    checkTeamName(name);
    const settings = parseTeamFields(raw, { services, groups }, {
      allow: ["token", "tokenSha256"],
    });
    const r = raw as Record<string, unknown>;
    if ((r.token === undefined) === (r.tokenSha256 === undefined)) {
      throw new TeamFieldError("token", "or tokenSha256 is required, and only one of them");
    }
    let hash: string;
    if (r.token !== undefined) {
      if (typeof r.token !== "string" || r.token.trim().length < MIN_SECRET_LENGTH) {
        throw new TeamFieldError(
          "token",
          `must be a random string of at least ${MIN_SECRET_LENGTH} characters (not a passphrase)`,
        );
      }
      hash = tokenSha256(r.token.trim());
    } else hash = checkTokenSha256(r.tokenSha256);
    return { name, source: "config", tokenSha256: hash, ...settings };
  } catch (e) {
    if (e instanceof TeamFieldError) {
      throw new ConfigError(
        e.field === "name" ? `${where}: name ${e.message.slice(5)}` : `${where}.${e.message}`,
      );
    }
    throw e;
  }
}
