/**
 * How the attempts go on and end when no attempt answered: what follows a
 * refused attempt (a retry, the provider's pause waited out), the last
 * upstream answer (its retries spent), kvgate's own refusal (a wait for a
 * key or a token gave up), or, for a model group's request, the next
 * target's turn.
 *
 * @module
 */
import { gatewayErrors } from "../error_catalogue.ts";
import type { GatewayError } from "../errors.ts";
import type { Exchange } from "../exchange.ts";
import { hasNextTarget, NEXT_TARGET, targetFailed } from "./group_stage.ts";
import type { SkipReason } from "./group_walk.ts";
import type { StageDeps } from "../stage_deps.ts";
import { answer, respondSettled, type Settled } from "./respond.ts";
import { sleep } from "../../lib/mod.ts";
import type { Outcome } from "../../providers/mod.ts";
import { providerPaused } from "./key_stages.ts";

/** What the attempts end in: an answer, or (a group's target failed) the next target's turn. */
export type Ended = Response | typeof NEXT_TARGET;

/** What the attempts have learned so far, for the next one and for the final answer. */
export interface Tries {
  /** Keys tried; made on the first retry, most requests need none. */
  tried: Set<string> | undefined;
  last: Settled | undefined;
  lastFailure: "timeout" | "network" | undefined;
  /** Keys this request has found at fault (401/403/quota): a second one makes the request the suspect. */
  keyFaults: number;
}

/**
 * A wait for a key or a token gave up: the client gets the last upstream
 * answer when a retry was waiting, else kvgate's own `err`.
 */
export function endWaiting(
  p: StageDeps,
  x: Exchange,
  tries: Tries,
  err: GatewayError,
): Ended {
  if (switchesTarget(x, tries, err)) return NEXT_TARGET;
  if (tries.last) return respondSettled(p, x, tries.last, "exhausted");
  return answer(p, x, err);
}

/**
 * Whether a group's request goes on to its next target: this one failed
 * (429 or 5xx after its retries, no answer, or its keys or provider turned
 * out resting, or the service paused by an admin, when its view was read
 * before sending) and a target is left. A refusal of the
 * request itself (4xx) or of the team is the answer on any target.
 */
export function switchesTarget(x: Exchange, tries: Tries, err?: GatewayError): boolean {
  if (!hasNextTarget(x.group)) return false;
  const status = tries.lastFailure === undefined ? tries.last?.status : undefined;
  let reason: SkipReason | undefined;
  if (tries.lastFailure !== undefined || (status !== undefined && status >= 500)) {
    reason = "upstream_error";
  } else if (status === 429) reason = "upstream_429";
  else if (status === 401 || status === 403) reason = "keys_refused";
  else if (status === undefined) reason = SWITCHING_CODES.get(err?.code ?? "");
  if (reason !== undefined) targetFailed(x.group!, reason);
  return reason !== undefined;
}

/** kvgate's own refusals on a target that another target may not share, and the skip they are. */
const SWITCHING_CODES = new Map<string, SkipReason>([
  ["gateway_keys_resting", "keys_resting"],
  ["gateway_provider_backoff", "provider_backoff"],
  ["service_paused", "service_paused"],
]);

/** After the last attempt: the last upstream answer, or why there was none. */
export function giveUp(p: StageDeps, x: Exchange, tries: Tries): Ended {
  if (switchesTarget(x, tries)) return NEXT_TARGET;
  if (tries.last && tries.lastFailure === undefined) {
    return respondSettled(p, x, tries.last, "exhausted");
  }
  const service = x.rt.service.name;
  return answer(
    p,
    x,
    tries.lastFailure === "timeout"
      ? gatewayErrors.upstreamTimeout(service, p.config.firstByteTimeoutMs)
      : gatewayErrors.upstreamUnreachable(service),
  );
}

/**
 * What follows an attempt refused without an answer to pass on: wait out
 * a provider-wide pause (`paused`; a model group's request goes to its
 * next target instead), or retry (after a back-off when the upstream
 * failed), or `stop` when no retry is left or the back-off would pass the
 * deadline; the answer when the client left meanwhile.
 */
export async function afterRefusal(
  p: StageDeps,
  x: Exchange,
  tries: Tries,
  end: { retry: Outcome; sentAt: number },
  n: number,
  mayPause: boolean,
): Promise<"paused" | "retry" | "stop" | Ended> {
  if ((await providerPaused(x, end.retry, end.sentAt)) && mayPause) {
    // The provider refuses every key: a group's request goes to its next target at once…
    if (switchesTarget(x, tries)) return NEXT_TARGET;
    // …any other waits out the pause.
    p.metrics.retries.inc(x.rt.service.name, "provider_backoff");
    tries.tried = undefined;
    x.key = undefined;
    return "paused";
  }
  if (n === p.config.maxRetries) return "stop";
  p.metrics.retries.inc(x.rt.service.name, end.retry.kind);
  if (end.retry.kind !== "upstream_error") return "retry";
  const wait = Math.min(4000, 250 * 2 ** n) * (0.5 + p.random());
  if (p.clock.now() + wait > x.deadline) return "stop";
  if (!(await sleep(p.clock, wait, x.req.signal))) {
    return answer(p, x, gatewayErrors.clientClosed());
  }
  return "retry";
}
