/**
 * The configuration's layers and settings: GATEWAY_CONFIG_FILE, then
 * GATEWAY_CONFIG, read as JSON and merged over the built-in services and
 * the default settings, each setting checked with its name.
 *
 * @module
 */
import { DEFAULT_SERVICES, DEFAULT_SETTINGS, type ServiceConfig } from "./defaults.ts";
import { parseDayStart } from "../limiter/mod.ts";
import { checkPositive, ConfigError, describe, isRecord } from "./check.ts";
import { mergeService } from "./service_fields.ts";

/** One layer of configuration: where it came from, and its JSON object. */
export type Layer = [source: string, value: Record<string, unknown>];

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

/** The layers the environment names, in the order they apply. */
export function readLayers(
  env: (name: string) => string | undefined,
  readFile: (path: string) => string,
): Layer[] {
  const layers: Layer[] = [];
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
  return layers;
}

/** The layers merged: settings over the defaults, services over the built-ins, teams and groups as given. */
export function mergeLayers(layers: readonly Layer[]): {
  settings: Record<string, unknown>;
  services: Record<string, ServiceConfig>;
  rawTeams: Record<string, unknown>;
  rawGroups: Record<string, unknown>;
} {
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
  return { settings, services, rawTeams, rawGroups };
}

/** Checks every setting, naming the one at fault; returns `dayStartsAt` in ms after UTC midnight. */
export function checkSettings(settings: Record<string, unknown>): number {
  for (const f of POSITIVE_SETTINGS) checkPositive(`GATEWAY_CONFIG.${f}`, settings[f], false);
  // A body the budget cannot hold would get 429 gateway_busy on every try, never an answer.
  if ((settings.bodyBudgetBytes as number) < (settings.maxBodyBytes as number)) {
    throw new ConfigError(
      `GATEWAY_CONFIG.bodyBudgetBytes (${settings.bodyBudgetBytes}) must be at least maxBodyBytes (${settings.maxBodyBytes}): a body of that size could never be held`,
    );
  }
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

  try {
    return parseDayStart(String(settings.dayStartsAt));
  } catch (e) {
    throw new ConfigError(`GATEWAY_CONFIG.${(e as Error).message}`);
  }
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
