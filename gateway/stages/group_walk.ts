/**
 * The shapes of a model group's request as it walks its targets: what the
 * request record (`exchange.ts`) carries and the group stage moves on.
 * Types only, so that the record and the stages that fill it never import
 * each other.
 *
 * @module
 */
import type { ModelGroup } from "../../config/mod.ts";
import type { ServiceRuntime } from "../runtime.ts";

/** Why a target was passed over. */
export type SkipReason =
  | "no_keys"
  | "service_paused"
  | "provider_backoff"
  | "keys_resting"
  | "day_spent"
  | "rate_limited"
  | "upstream_error"
  | "upstream_429"
  | "keys_refused";

/** A group as the gateway serves it: its targets with their services' runtimes. */
export interface ServedGroup {
  group: ModelGroup;
  runtimes: readonly ServiceRuntime[];
}

/** One skipped target, for the log and the answer when every target is out. */
export interface Skip {
  target: string;
  reason: SkipReason;
  /** When the target frees up (epoch ms), when known. */
  untilMs: number;
}

/** A group request's walk over its targets. */
export interface GroupWalk {
  served: ServedGroup;
  /** The target being tried (an index into the group's targets). */
  at: number;
  skipped: Skip[];
  /** The path after the group's name (`/v1/chat/completions`). */
  rest: string;
  /** The client's JSON body, parsed once when a target's model must replace its `model`. */
  parsed: Record<string, unknown> | undefined;
}
