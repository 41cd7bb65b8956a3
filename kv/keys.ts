/**
 * Every Deno KV key kvgate writes, declared once as typed tuple builders.
 * Keys are never built by joining strings, and no raw provider key appears
 * in one: key ids are short hashes (see `keys/key_id.ts`).
 *
 * @module
 */

/**
 * Whose limits a record holds: a service's (its name), one team's own
 * pacing on a service, or one provider key's quota. Team and key records
 * sit under the service's, in branches ("team", "upstream_key") that sort
 * after "tat", so no range read of the service's own ever reaches them.
 */
export type LimitScope =
  | string
  | { service: string; team: string }
  | { service: string; key: string; per: "requests" | "tokens" };

/** The key segments of a scope: `[service]`, `[service, "team", team]` or a key's. */
function scopeParts(scope: LimitScope): readonly string[] {
  if (typeof scope === "string") return [scope];
  if ("team" in scope) return [scope.service, "team", scope.team];
  return [scope.service, "upstream_key", scope.key, scope.per];
}

/** The shared token bucket of a scope, compare-and-set form: `{tokens, updatedAt}`. */
export const bucketKey = (scope: LimitScope) => ["bucket", ...scopeParts(scope)] as const;

/**
 * The shared GCRA ledger of a service: a `Deno.KvU64` holding the end of all
 * reserved time in epoch microseconds (see `limiter/gcra.ts`).
 */
export const tokenLedgerKey = (scope: LimitScope) =>
  ["token_ledger", ...scopeParts(scope), "tat"] as const;

/**
 * One reservation on a service's ledger: a `Deno.KvU64` token count, written
 * in the same atomic operation as the ledger. Keyed by the reserving
 * instance's clock so that a reader lists only recent ones.
 */
export const ledgerClaimKey = (
  scope: LimitScope,
  atMs: number,
  instanceId: string,
  seq: number,
) => ["token_ledger", ...scopeParts(scope), "claim", atMs, instanceId, seq] as const;

/**
 * The range read back after a reservation: the claims made from `fromMs` on,
 * then the ledger itself, in one list (one consistent read).
 */
export const ledgerReadRange = (scope: LimitScope, fromMs: number) => ({
  start: ["token_ledger", ...scopeParts(scope), "claim", fromMs] as const,
  // Exclusive end just past tokenLedgerKey(scope): "claim" < "tat" < ["tat", 0] < "team" < "upstream_key".
  end: ["token_ledger", ...scopeParts(scope), "tat", 0] as const,
});

/** In-flight slot leases of a service: `{holders: {instanceId: {n, expiresAt}}}`. */
export const slotsKey = (scope: LimitScope) => ["slots", ...scopeParts(scope)] as const;

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

/** A team made through the admin API: its settings and its token's SHA-256, never the token. */
export const teamKey = (name: string) => ["team", name] as const;

/** Prefix listing every team made through the admin API. */
export const teamPrefix = () => ["team"] as const;

/** A counter every change to the API's teams bumps, so that instances hear of it (a watch). */
export const teamsChangedKey = () => ["teams_changed"] as const;

/**
 * A team's use of one budget day (`day`: the day's start, `YYYY-MM-DD` UTC
 * date of the window): `"requests"` (reserved in chunks, unused ones handed
 * back) or `"tokens"` (added from answers), each a `Deno.KvU64`.
 */
export const teamUsageKey = (team: string, day: string, what: "requests" | "tokens") =>
  ["team_usage", team, day, what] as const;

/**
 * One instance's demand on a service, by team, for fair sharing:
 * `{at, teams: {name: {weight, demand}}}` (see `teams/share_board.ts`).
 */
export const shareDemandKey = (service: string, instanceId: string) =>
  ["share_demand", service, instanceId] as const;

/** Prefix listing every instance's demand on a service. */
export const shareDemandPrefix = (service: string) => ["share_demand", service] as const;

/**
 * What a provider's headers last said of one key's limits (see
 * `providers/rate_headers.ts`): `{requests?, tokens?, at}`, shared so that every
 * instance paces the key by it.
 */
export const keyRateKey = (service: string, keyId: string) => ["key_rate", service, keyId] as const;

/** Prefix listing every key's rate record of a service. */
export const keyRatePrefix = (service: string) => ["key_rate", service] as const;

/**
 * A key's use on one provider day (`day`: the day's start, `YYYY-MM-DD` UTC
 * date): `what` is `"requests"` (sent with it) or `"tokens"`, each a
 * `Deno.KvU64` summed by every instance; with `keyQuota.rpd` the requests
 * are reserved in chunks as team budgets are.
 */
export const keyDayUsageKey = (service: string, keyId: string, day: string, what: string) =>
  ["key_usage", service, keyId, day, what] as const;

/**
 * A service paused because its provider refused every key at once:
 * `{until, strikes, pauseMs, reason, probe?}` (see `keys/provider_backoff.ts`).
 */
export const providerBackoffKey = (service: string) => ["provider_backoff", service] as const;

/**
 * One service's answers in one minute (`minute`: its start, epoch ms),
 * summed by every instance: `what` is `"requests"`, `"refused"` (answered
 * 429), `"errors"` (5xx) or `"upstream_429"`, each a `Deno.KvU64`.
 */
export const minuteCountKey = (service: string, minute: number, what: string) =>
  ["minute_counts", service, minute, what] as const;

/** The range of a service's minute counts from `fromMinute` up to, not including, `toMinute`. */
export const minuteCountRange = (service: string, fromMinute: number, toMinute: number) => ({
  start: ["minute_counts", service, fromMinute] as const,
  end: ["minute_counts", service, toMinute] as const,
});

/**
 * The day records that are summed (so cannot carry an expiry) and are
 * pruned instead: each prefix, and where the day (`YYYY-MM-DD`) sits in
 * its keys. See `kv/prune_days.ts`.
 */
export const DAY_RECORDS: readonly { prefix: Deno.KvKey; dayAt: number }[] = [
  { prefix: ["team_usage"], dayAt: 2 },
  { prefix: ["key_usage"], dayAt: 3 },
  // Kept by versions before key_usage held every key's day; pruned until none is left.
  { prefix: ["key_day"], dayAt: 3 },
];
