/**
 * A team's request as the request record (`exchange.ts`) carries it; the
 * team stages (`team_stages.ts`) fill it in and hand it back. Types only,
 * so that the record and the stages never import each other.
 *
 * @module
 */
import type { ScopeLimiter } from "../../limiter/mod.ts";
import type { Team } from "../../teams/mod.ts";

/**
 * A team's request as it walks the stages: who it is, its lane, and what it
 * holds (the team's own slot, a place in the fair gate's backlog) until
 * `leaveTeam` hands them back, exactly once.
 */
export interface TeamPass {
  team: Team;
  bulk: boolean;
  /** Bytes of the request body, for the token estimate. */
  requestBytes: number;
  /** The team's own pacing on this service, when it has one. */
  limiter: ScopeLimiter | undefined;
  /** Hands back the team's own in-flight slot, when it holds one. */
  releaseSlot: (() => void) | undefined;
  /** Counted in the fair gate's backlog until it goes upstream. */
  inGate: boolean;
  left: boolean;
  /** One request of the day's budget is charged for it already (a group's request is charged once). */
  charged: boolean;
}
