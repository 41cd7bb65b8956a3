/**
 * One service's fields: the built-in's (or the defaults of an added one)
 * with the config's patch merged over them, each validated with the place
 * named.
 *
 * @module
 */
import type { ServiceConfig, ServiceStyle, StreamRelay } from "./defaults.ts";
import { parseDayStart } from "../limiter/mod.ts";
import { type KeyQuota, parseKeyQuota } from "../keys/mod.ts";
import { type RateLimitDialect } from "../providers/mod.ts";
import { checkOneOf, checkPositive, ConfigError, describe, isRecord } from "./check.ts";

const SERVICE_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const STYLES: readonly ServiceStyle[] = ["openai", "anthropic", "gemini"];
const SERVICE_FIELDS = [
  "target",
  "envKey",
  "rps",
  "burst",
  "maxConn",
  "style",
  "streamRelay",
  "keyQuota",
  "dayResetsAt",
  "rateLimitHeaders",
  "keyInQuery",
] as const;
const DIALECTS: readonly RateLimitDialect[] = ["openai", "groq", "cerebras", "anthropic", "none"];
const STREAM_RELAYS: readonly StreamRelay[] = ["observe", "native"];
/** Variable names Deno Deploy refuses to set for an app. */
const RESERVED_ENV = /^(DENO_|OTEL_|LD_)/i;

function checkTarget(where: string, v: unknown): string {
  if (typeof v !== "string") {
    throw new ConfigError(`${where} must be a URL string (got ${describe(v)})`);
  }
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new ConfigError(`${where} must be an absolute http(s) URL (got ${describe(v)})`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(`${where} must be an absolute http(s) URL (got ${describe(v)})`);
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new ConfigError(`${where} must not carry a query, fragment or credentials`);
  }
  return url.href.replace(/\/+$/, "");
}

/** The name of the variable holding a service's keys: a variable name Deploy lets users set. */
function checkEnvKey(where: string, v: unknown): string {
  if (typeof v !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(v)) {
    throw new ConfigError(`${where} must be an environment variable name (got ${describe(v)})`);
  }
  if (RESERVED_ENV.test(v)) {
    throw new ConfigError(
      `${where} ${v} starts with a prefix Deno Deploy keeps for itself (DENO_, OTEL_, LD_): set envKey to another name`,
    );
  }
  return v;
}

/** A service's name, and its config's shape: an object of known fields. */
function checkPatch(
  where: string,
  name: string,
  patch: unknown,
): asserts patch is Record<string, unknown> {
  if (!SERVICE_NAME.test(name)) {
    throw new ConfigError(`${where}: a service name must match ${SERVICE_NAME} (got "${name}")`);
  }
  if (!isRecord(patch)) throw new ConfigError(`${where} must be an object`);
  for (const field of Object.keys(patch)) {
    if (!(SERVICE_FIELDS as readonly string[]).includes(field)) {
      throw new ConfigError(
        `${where}.${field} is not a known field (known: ${SERVICE_FIELDS.join(", ")})`,
      );
    }
  }
}

/** What a new service is where its config says nothing (its keys' variable is named after it). */
function serviceDefaults(name: string): Record<string, unknown> {
  return {
    envKey: `${name.toUpperCase().replaceAll("-", "_")}_API_KEYS`,
    rps: 5,
    burst: 10,
    maxConn: 5,
    style: "openai",
    streamRelay: "native",
    keyQuota: {},
    dayResetsAt: "00:00",
    rateLimitHeaders: "openai",
    keyInQuery: false,
  };
}

/** `base` (a built-in service, or none) with `patch` merged over it, validated. */
export function mergeService(
  name: string,
  base: ServiceConfig | undefined,
  patch: unknown,
): ServiceConfig {
  const where = `GATEWAY_CONFIG.services.${name}`;
  checkPatch(where, name, patch);
  const merged: Record<string, unknown> = { ...serviceDefaults(name), ...base, ...patch };
  if (merged.target === undefined) {
    throw new ConfigError(`${where}.target is required for a new service`);
  }
  const style = checkOneOf(`${where}.style`, merged.style, STYLES);
  const streamRelay = checkOneOf(`${where}.streamRelay`, merged.streamRelay, STREAM_RELAYS);
  const envKey = checkEnvKey(`${where}.envKey`, merged.envKey);
  const rateLimitHeaders = checkOneOf(
    `${where}.rateLimitHeaders`,
    merged.rateLimitHeaders,
    DIALECTS,
  );
  if (typeof merged.keyInQuery !== "boolean") {
    throw new ConfigError(
      `${where}.keyInQuery must be true or false (got ${describe(merged.keyInQuery)})`,
    );
  }
  if (merged.keyInQuery && style !== "gemini") {
    throw new ConfigError(`${where}.keyInQuery is for gemini-style services only`);
  }
  let keyQuota: KeyQuota;
  try {
    keyQuota = parseKeyQuota(merged.keyQuota);
    parseDayStart(String(merged.dayResetsAt), "dayResetsAt");
  } catch (e) {
    throw new ConfigError(`${where}.${(e as Error).message}`);
  }
  return {
    target: checkTarget(`${where}.target`, merged.target),
    envKey,
    rps: checkPositive(`${where}.rps`, merged.rps, false),
    burst: checkPositive(`${where}.burst`, merged.burst, true),
    maxConn: checkPositive(`${where}.maxConn`, merged.maxConn, true),
    style,
    streamRelay,
    keyQuota,
    dayResetsAt: String(merged.dayResetsAt),
    rateLimitHeaders,
    keyInQuery: merged.keyInQuery,
  };
}
