/**
 * What the limiter answers: admission, or a refusal that says why. The edge
 * maps a refusal to the provider's error shape with Retry-After.
 *
 * @module
 */

/** Why a request was not admitted. */
export type RefusalReason = "queue_full" | "queue_timeout" | "aborted" | "closing";

/** A refusal; the edge maps it to 429 + Retry-After in the provider's shape. */
export interface Refusal {
  ok: false;
  reason: RefusalReason;
  retryAfterMs: number;
}

/** Permission to send: either granted or refused with a reason. */
export type Admission = { ok: true } | Refusal;

/** A held in-flight slot; `release()` is idempotent. */
export type SlotAdmission = { ok: true; release: () => void } | Refusal;

/** Options for waiting on the limiter. */
export interface WaitOptions {
  /** Epoch ms after which the wait gives up with `queue_timeout`. */
  deadline: number;
  /** Aborting leaves the queue at once with `aborted`. */
  signal?: AbortSignal;
  /** Goes to the front of the token queue (a retry already holding a slot). */
  priority?: boolean;
  /** The team it waits for: a fair queue shares turns between teams by weight. */
  team?: string;
  /** The team's weight. Default 1. */
  weight?: number;
  /** Bulk lane: after the team's interactive requests. Default false. */
  bulk?: boolean;
}
