/**
 * Every Deno KV key kvgate writes, declared once as typed tuple builders.
 * Keys are never built by joining strings, and no raw provider key appears
 * in one: key ids are short hashes (see `keys/key_id.ts`).
 *
 * @module
 */

/** The shared token bucket of a service: `{tokens, updatedAt}`. */
export const bucketKey = (service: string) => ["bucket", service] as const;

/** In-flight slot leases of a service: `{holders: {instanceId: {n, expiresAt}}}`. */
export const slotsKey = (service: string) => ["slots", service] as const;

/** Health of one provider key of a service: cooling down or disabled until a time. */
export const keyHealthKey = (service: string, keyId: string) =>
  ["key_health", service, keyId] as const;

/** Prefix listing every key-health record of a service. */
export const keyHealthPrefix = (service: string) => ["key_health", service] as const;

/** Heartbeat record of one live gateway instance. */
export const instanceKey = (instanceId: string) => ["instance", instanceId] as const;

/** Prefix listing every instance heartbeat. */
export const instancePrefix = () => ["instance"] as const;
