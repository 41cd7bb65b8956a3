/**
 * Every Deno KV key kvgate writes, declared once as typed tuple builders.
 * Keys are never built by joining strings, and no raw provider key appears
 * in one: key ids are short hashes (see `keys/key_id.ts`).
 *
 * @module
 */

/** The shared token bucket of a service, compare-and-set form: `{tokens, updatedAt}`. */
export const bucketKey = (service: string) => ["bucket", service] as const;

/**
 * The shared GCRA ledger of a service: a `Deno.KvU64` holding the end of all
 * reserved time in epoch microseconds (see `limiter/gcra.ts`).
 */
export const tokenLedgerKey = (service: string) => ["token_ledger", service, "tat"] as const;

/**
 * One reservation on a service's ledger: a `Deno.KvU64` token count, written
 * in the same atomic operation as the ledger. Keyed by the reserving
 * instance's clock so that a reader lists only recent ones.
 */
export const ledgerClaimKey = (service: string, atMs: number, instanceId: string, seq: number) =>
  ["token_ledger", service, "claim", atMs, instanceId, seq] as const;

/**
 * The range read back after a reservation: the claims made from `fromMs` on,
 * then the ledger itself, in one list (one consistent read).
 */
export const ledgerReadRange = (service: string, fromMs: number) => ({
  start: ["token_ledger", service, "claim", fromMs] as const,
  // Exclusive end just past tokenLedgerKey(service): "claim" < "tat" < ["tat", 0].
  end: ["token_ledger", service, "tat", 0] as const,
});

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

/** Read (never written) to tell whether KV answers; see `kv/status.ts`. */
export const probeKey = () => ["probe"] as const;
