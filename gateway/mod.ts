/**
 * The request pipeline and the gateway that assembles it.
 *
 * @module
 */
export * from "./gateway.ts";
export * from "./handler.ts";
export * from "./log.ts";
export * from "./runtime.ts";
export { route, serviceName } from "./stages/route.ts";
