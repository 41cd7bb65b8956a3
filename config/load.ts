import {
  DEFAULT_SERVICES,
  DEFAULT_SETTINGS,
  type GatewaySettings,
  type ServiceConfig,
} from "./defaults.ts";
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
import { checkPositive, ConfigError, describe, isRecord } from "./check.ts";
import { mergeService } from "./service_fields.ts";

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

const POSITIVE_SETTINGS = [
  "queueTimeoutMs",
  "firstByteTimeoutMs",
  "idleTimeoutMs",
  "maxBodyBytes",
  "bodyBudgetBytes",
  "keyDisableMs",
  "leaseMs",
  "slotTtlMs",
  "kvTimeoutMs",
  "drainMs",
  "shutdownMs",
  "idleAfterMs",
] as const;
const INTEGER_SETTINGS = ["queueLimit", "maxRetries"] as const;

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

function parseJson(source: string, text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    // Only where: the parser's own message quotes the text around the error,
    // which can be part of a token.
    const at = /at position (\d+)(?: \(line (\d+) column (\d+)\))?/.exec((e as Error).message);
    const where = at
      ? ` at position ${at[1]}${at[2] ? ` (line ${at[2]} column ${at[3]})` : ""}`
      : "";
    throw new ConfigError(
      `${source} is not valid JSON${where}: check its quotes, commas and braces`,
    );
  }
  if (!isRecord(parsed)) throw new ConfigError(`${source} must be a JSON object`);
  return parsed;
}

/**
 * Builds the gateway configuration from the environment: built-in services,
 * then GATEWAY_CONFIG_FILE, then GATEWAY_CONFIG merged over them.
 *
 * @throws {ConfigError} naming the service and field at fault.
 */
export function loadConfig(env: EnvReader, options: LoadConfigOptions = {}): GatewayConfig {
  const readFile = options.readFile ?? ((p: string) => Deno.readTextFileSync(p));
  const layers: Array<[string, Record<string, unknown>]> = [];
  const file = env("GATEWAY_CONFIG_FILE");
  if (file) {
    let text: string;
    try {
      text = readFile(file);
    } catch (e) {
      throw new ConfigError(`GATEWAY_CONFIG_FILE ${file} cannot be read: ${(e as Error).message}`);
    }
    layers.push([
      `GATEWAY_CONFIG_FILE (${file})`,
      parseJson(`GATEWAY_CONFIG_FILE (${file})`, text),
    ]);
  }
  const inline = env("GATEWAY_CONFIG");
  if (inline && inline.trim() !== "") {
    layers.push(["GATEWAY_CONFIG", parseJson("GATEWAY_CONFIG", inline)]);
  }

  const settings: Record<string, unknown> = { ...DEFAULT_SETTINGS };
  const services: Record<string, ServiceConfig> = { ...DEFAULT_SERVICES };
  const rawTeams: Record<string, unknown> = {};
  const rawGroups: Record<string, unknown> = {};
  for (const [, layer] of layers) {
    for (const [field, value] of Object.entries(layer)) {
      if (field === "teams") {
        if (!isRecord(value)) throw new ConfigError("GATEWAY_CONFIG.teams must be an object");
        Object.assign(rawTeams, value);
      } else if (field === "groups") {
        if (!isRecord(value)) throw new ConfigError("GATEWAY_CONFIG.groups must be an object");
        Object.assign(rawGroups, value);
      } else if (field === "services") {
        if (!isRecord(value)) throw new ConfigError("GATEWAY_CONFIG.services must be an object");
        for (const [name, patch] of Object.entries(value)) {
          services[name] = mergeService(name, services[name], patch);
        }
      } else if (field in DEFAULT_SETTINGS) {
        settings[field] = value;
      } else {
        throw new ConfigError(
          `GATEWAY_CONFIG.${field} is not a known setting (known: services, teams, groups, ${
            Object.keys(DEFAULT_SETTINGS).join(", ")
          })`,
        );
      }
    }
  }
  for (const f of POSITIVE_SETTINGS) checkPositive(`GATEWAY_CONFIG.${f}`, settings[f], false);
  for (const f of INTEGER_SETTINGS) {
    const v = settings[f];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new ConfigError(
        `GATEWAY_CONFIG.${f} must be a non-negative integer (got ${describe(v)})`,
      );
    }
  }
  const expected = settings.expectedInstances;
  if (typeof expected !== "number" || !Number.isInteger(expected) || expected < 1) {
    throw new ConfigError(
      `GATEWAY_CONFIG.expectedInstances must be a positive integer (got ${describe(expected)})`,
    );
  }
  if (typeof settings.accessPasswordAdmin !== "boolean") {
    throw new ConfigError(
      `GATEWAY_CONFIG.accessPasswordAdmin must be true or false (got ${
        describe(settings.accessPasswordAdmin)
      })`,
    );
  }
  const header = settings.clientAddressHeader;
  if (header !== undefined && (typeof header !== "string" || !/^[a-z0-9-]+$/i.test(header))) {
    throw new ConfigError(
      `GATEWAY_CONFIG.clientAddressHeader must be a header name like "x-forwarded-for" (got ${
        describe(header)
      })`,
    );
  }
  if (typeof header === "string") settings.clientAddressHeader = header.toLowerCase();
  if (settings.limitMode !== "shared" && settings.limitMode !== "local") {
    throw new ConfigError(
      `GATEWAY_CONFIG.limitMode must be "shared" or "local" (got ${describe(settings.limitMode)})`,
    );
  }

  let dayStartMs: number;
  try {
    dayStartMs = parseDayStart(String(settings.dayStartsAt));
  } catch (e) {
    throw new ConfigError(`GATEWAY_CONFIG.${(e as Error).message}`);
  }
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
  const resolved: Record<string, Service> = {};
  for (const [name, svc] of Object.entries(services)) {
    resolved[name] = {
      name,
      ...svc,
      keys: parseKeyList(env(svc.envKey)),
      dayResetMs: parseDayStart(svc.dayResetsAt, "dayResetsAt"),
    };
  }
  const password = secret("ACCESS_PASSWORD", env("ACCESS_PASSWORD"));
  const adminPassword = secret("ADMIN_PASSWORD", env("ADMIN_PASSWORD"));
  const metricsToken = secret("METRICS_TOKEN", env("METRICS_TOKEN"));
  const hashes = new Map<string, string>();
  for (
    const [name, value] of [["ACCESS_PASSWORD", password], ["ADMIN_PASSWORD", adminPassword], [
      "METRICS_TOKEN",
      metricsToken,
    ]]
  ) {
    if (value === undefined) continue;
    const clash = hashes.get(tokenSha256(value));
    if (clash) throw new ConfigError(`${name} must differ from ${clash}`);
    hashes.set(tokenSha256(value), name!);
  }
  for (const t of teams) {
    const clash = hashes.get(t.tokenSha256);
    if (clash) {
      throw new ConfigError(`GATEWAY_CONFIG.teams.${t.name}.token is the same as ${clash}'s`);
    }
    hashes.set(t.tokenSha256, `team ${t.name}`);
  }
  return {
    ...(settings as unknown as GatewaySettings),
    services: resolved,
    password,
    adminPassword,
    metricsToken,
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
