/**
 * Model groups: a name clients use like a service (`/<group>/v1/…`), and
 * behind it an ordered list of targets — a service and the model to ask it
 * for. Validated here, up front, each error naming the field.
 *
 * @module
 */
import { ConfigError, describe, isRecord } from "./check.ts";
import type { ServiceConfig, ServiceStyle } from "./defaults.ts";

/** One target of a group: a service, and the upstream model to ask it for. */
export interface GroupTarget {
  service: string;
  model: string;
}

/** A model group as configured. */
export interface ModelGroup {
  name: string;
  /** In order of preference. */
  targets: readonly GroupTarget[];
  /**
   * A target whose service could take the request within this many ms (its
   * queue, its resting keys, its provider's pause) is still chosen; past it,
   * the next target is. Default 1000.
   */
  switchAfterMs: number;
}

const GROUP_FIELDS = ["targets", "switchAfterMs"];
const GROUP_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** The API a style speaks: OpenAI-shaped (openai, gemini's /v1) or Anthropic-shaped. */
function apiOf(style: ServiceStyle): "openai" | "anthropic" {
  return style === "anthropic" ? "anthropic" : "openai";
}

/** `GATEWAY_CONFIG.groups`, checked against the services. */
export function parseGroups(
  raw: unknown,
  services: Readonly<Record<string, ServiceConfig>>,
): ModelGroup[] {
  if (raw === undefined) return [];
  if (!isRecord(raw)) throw new ConfigError(`GATEWAY_CONFIG.groups must be an object`);
  return Object.entries(raw).map(([name, g]) => parseGroup(name, g, services));
}

function parseGroup(
  name: string,
  raw: unknown,
  services: Readonly<Record<string, ServiceConfig>>,
): ModelGroup {
  const where = `GATEWAY_CONFIG.groups.${name}`;
  if (!GROUP_NAME.test(name)) {
    throw new ConfigError(`${where}: a group name must match ${GROUP_NAME} (got "${name}")`);
  }
  if (Object.hasOwn(services, name)) {
    throw new ConfigError(`${where}: a group may not be named like the service ${name}`);
  }
  if (!isRecord(raw)) throw new ConfigError(`${where} must be an object`);
  for (const field of Object.keys(raw)) {
    if (!GROUP_FIELDS.includes(field)) {
      throw new ConfigError(
        `${where}.${field} is not a known field (known: ${GROUP_FIELDS.join(", ")})`,
      );
    }
  }
  const switchAfterMs = raw.switchAfterMs ?? 1000;
  if (typeof switchAfterMs !== "number" || !Number.isFinite(switchAfterMs) || switchAfterMs < 0) {
    throw new ConfigError(
      `${where}.switchAfterMs must be a non-negative number of ms (got ${describe(switchAfterMs)})`,
    );
  }
  if (!Array.isArray(raw.targets) || raw.targets.length === 0) {
    throw new ConfigError(`${where}.targets must be a non-empty list of {service, model}`);
  }
  const seen = new Set<string>();
  let api: "openai" | "anthropic" | undefined;
  const targets = raw.targets.map((t: unknown, i: number): GroupTarget => {
    const at = `${where}.targets[${i}]`;
    if (!isRecord(t) || typeof t.service !== "string" || typeof t.model !== "string" || !t.model) {
      throw new ConfigError(`${at} must be {"service": "<name>", "model": "<model>"}`);
    }
    const service = services[t.service];
    if (service === undefined) {
      throw new ConfigError(
        `${at}.service names no service: "${t.service}" (known: ${
          Object.keys(services).join(", ")
        })`,
      );
    }
    const its = apiOf(service.style);
    if (api !== undefined && its !== api) {
      throw new ConfigError(
        `${at}.service ${t.service} speaks the ${its} API, the group's first target the ${api} API: a group cannot mix them (no format translation)`,
      );
    }
    api = its;
    const key = `${t.service}/${t.model}`;
    if (seen.has(key)) throw new ConfigError(`${at} repeats the target ${key}`);
    seen.add(key);
    return { service: t.service, model: t.model };
  });
  return { name, targets, switchAfterMs };
}
