/**
 * The only door to storage: KV key shapes and the bounded, timed KV call.
 *
 * @module
 */
export * from "./keys.ts";
export * from "./call.ts";
