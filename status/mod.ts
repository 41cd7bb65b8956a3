/**
 * Seeing the deployment: this instance's metrics (Prometheus text format)
 * and the status of every service, key, team and instance, read from KV.
 *
 * @module
 */
export * from "./metrics.ts";
export * from "./board.ts";
export * from "./minute_counts.ts";
export * from "./page.ts";
export * from "./telemetry.ts";
