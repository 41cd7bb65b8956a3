/**
 * Configuration: built-in services, gateway-wide settings, and the loader
 * that merges GATEWAY_CONFIG / GATEWAY_CONFIG_FILE over them.
 *
 * @module
 */
export * from "./defaults.ts";
export * from "./load.ts";
export * from "./groups.ts";
