/**
 * Provider keys: ids, round-robin picking, and health shared through KV.
 *
 * @module
 */
export * from "./key_id.ts";
export * from "./health_store.ts";
export * from "./key_pool.ts";
export * from "./key_quota.ts";
export * from "./token_meter.ts";
export * from "./key_rate_store.ts";
export * from "./key_pacing.ts";
export * from "./provider_backoff.ts";
