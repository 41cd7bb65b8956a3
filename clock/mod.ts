/**
 * Time and timers, injected everywhere so that tests advance a fake clock
 * instead of sleeping.
 *
 * @module
 */
export * from "./clock.ts";
export * from "./sleep.ts";
