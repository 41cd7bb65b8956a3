/**
 * The bottom of the tree, knowing nothing of kvgate: time and timers
 * (injected everywhere, so that tests advance a fake clock instead of
 * sleeping), one timer for many deadlines, and request ids.
 *
 * @module
 */
export * from "./clock.ts";
export * from "./sleep.ts";
export * from "./timeout_sweeper.ts";
export * from "./request_id.ts";
