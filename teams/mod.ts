/**
 * Teams sharing one key pool: who they are (config and admin API), their
 * scope, own pacing, daily budgets, and their fair share of a saturated
 * service, each holding across instances through Deno KV.
 *
 * @module
 */
export * from "./team.ts";
export * from "./team_scope.ts";
export * from "./token.ts";
export * from "./registry.ts";
export * from "./fair_share.ts";
export * from "./share_board.ts";
export * from "./fair_gate.ts";
export * from "./team_limiters.ts";
