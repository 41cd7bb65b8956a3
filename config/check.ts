/**
 * The checks every configuration field goes through, with messages that
 * name the place: the error, and small validators.
 *
 * @module
 */

/** A configuration problem found at start-up; the message names the place. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** True for a plain object (not null, not an array). */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A value as the config had it, for a message. */
export function describe(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

/** `v` when it is one of `allowed`; else a ConfigError naming `where` and the choices. */
export function checkOneOf<T extends string>(where: string, v: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) {
    throw new ConfigError(`${where} must be one of ${allowed.join(", ")} (got ${describe(v)})`);
  }
  return v as T;
}

/** `v` when it is a positive number (an integer, with `integer`); else a ConfigError naming `where`. */
export function checkPositive(where: string, v: unknown, integer: boolean): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    const kind = integer ? "a positive integer" : "a positive number";
    throw new ConfigError(`${where} must be ${kind} (got ${describe(v)})`);
  }
  return v;
}
