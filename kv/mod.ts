/**
 * The only door to storage: KV key shapes, the bounded and timed KV call,
 * where KV lives (KV_PATH), how it is opened, and whether it answers.
 *
 * @module
 */
export * from "./keys.ts";
export * from "./call.ts";
export * from "./path.ts";
export * from "./status.ts";
export * from "./connect.ts";
export * from "./update.ts";
export * from "./watch.ts";
export * from "./prune_days.ts";
export * from "./ports.ts";
export * from "./fresh_view.ts";
