/**
 * Pacing: token buckets and in-flight caps, per instance or shared through KV.
 *
 * @module
 */
export * from "../lib/mod.ts";
export * from "./bucket.ts";
export * from "./gcra.ts";
export * from "./capacity_store.ts";
export * from "./kv_capacity_store.ts";
export * from "./degrading_store.ts";
export * from "./presence.ts";
export * from "./admission.ts";
export * from "./lease_policy.ts";
export * from "./token_stock.ts";
export * from "./wait_queue.ts";
export * from "./scope_limiter.ts";
export * from "./fair_queue.ts";
export * from "./queue_share.ts";
export * from "./waiting.ts";
export * from "./wake_list.ts";
export * from "./day.ts";
export * from "./day_budgets.ts";
