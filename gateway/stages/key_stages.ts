/**
 * The attempt's key stages: the provider-wide pause, choosing a key with
 * room (its quota, the provider's word on it), reading the limits each
 * answer states, and charging the tokens an answer used. A service with
 * nothing to pace (`rt.pacing` undefined, the one-key pause idle) passes
 * through these without a promise or a KV call.
 *
 * @module
 */
import { estimateInputTokens, type Pick, type PooledKey } from "../../keys/mod.ts";
import { type Outcome } from "../../providers/mod.ts";
import { estimateTokens } from "../../providers/mod.ts";
import type { Bytes } from "./body.ts";
import { gatewayErrors } from "../error_catalogue.ts";
import type { GatewayError } from "../errors.ts";
import type { Exchange } from "../exchange.ts";
import type { StageDeps } from "../stage_deps.ts";
import { waitOptions } from "./team_stages.ts";
import { waitLimit } from "./group_stage.ts";

/**
 * Sets the request's token cost on its keys, when the service counts tokens
 * per key; the error when no key could ever take it (more than a key's
 * tokens per minute), before anything is reserved.
 */
export function costOnKeys(x: Exchange, body: Bytes | undefined): GatewayError | undefined {
  const pacing = x.rt.pacing;
  if (!pacing?.countsTokens) return undefined;
  x.keyCost = estimateInputTokens(body?.byteLength ?? 0);
  if (pacing.fits(x.rt.pool.keys, x.keyCost)) return undefined;
  const cost = x.keyCost;
  x.keyCost = 0; // nothing is reserved for it, so nothing is charged
  return gatewayErrors.tokensTooLarge(x.rt.service.name, cost, pacing.ceiling(x.rt.pool.keys));
}

/**
 * Waits while the provider is paused (every key answered 429), within the
 * deadline, looking again whenever the pause changes; undefined when the
 * request may go (and `x.probe` says whether it is the single probe after
 * the pause), else the error to answer with.
 */
export function providerTurn(
  p: StageDeps,
  x: Exchange,
): undefined | Promise<GatewayError | undefined> {
  const backoff = x.rt.backoff;
  if (backoff === undefined || backoff.pause === undefined) return undefined;
  // A group's request waits no longer than its switchAfterMs when another target is left.
  const limit = waitLimit(x, p.clock.now());
  return (async () => {
    for (;;) {
      const now = p.clock.now();
      const turn = await backoff.turn(now);
      if (turn.go) {
        x.probe = turn.probe;
        x.now = p.clock.now();
        return undefined;
      }
      if (turn.admin) return gatewayErrors.servicePaused(x.rt.service.name);
      if (turn.untilMs > limit) {
        return gatewayErrors.providerBackoff(x.rt.service.name, turn.untilMs - now);
      }
      // Woken sooner when the pause changes: an admin's resume, the probe's answer.
      if (!(await backoff.waitForTurn(turn.untilMs, x.req.signal))) {
        return gatewayErrors.clientClosed();
      }
    }
  })();
}

/** The next key in rotation that is not resting and has room, taking its turn. */
export function pickKey(x: Exchange, tried: ReadonlySet<string> | undefined): Pick {
  return x.rt.pool.pick(x.now, tried, x.rt.pacing, x.keyCost);
}

/**
 * No key has room: waits, within the deadline, for the turn of `key` (the
 * next in rotation). The error when it would come too late.
 */
export async function waitForRoom(
  p: StageDeps,
  x: Exchange,
  key: PooledKey,
  retry: boolean,
): Promise<GatewayError | undefined> {
  const turn = await x.rt.pacing!.take(key, x.keyCost, waitOptions(x, retry));
  x.now = p.clock.now();
  if (x.req.signal.aborted) return gatewayErrors.clientClosed();
  if (turn.ok) return undefined;
  if ("tooLarge" in turn && turn.tooLarge) {
    return gatewayErrors.tokensTooLarge(x.rt.service.name, x.keyCost, x.rt.pacing!.ceiling([key]));
  }
  return gatewayErrors.keysResting(x.rt.service.name, turn.retryAfterMs);
}

/**
 * What an upstream answer says of its key and its provider: the limits in
 * its headers (every status), and whether the provider refuses every key.
 */
export function readAnswer(
  p: StageDeps,
  x: Exchange,
  key: PooledKey,
  headers: Headers,
  outcome: Outcome,
  sentAt: number,
): void {
  x.rt.pacing?.observe(key, headers, p.clock.now());
  const backoff = x.rt.backoff;
  if (backoff === undefined) return;
  const limited = outcome.kind === "rate_limited" && !outcome.daily;
  if (limited || outcome.kind === "success") {
    backoff.answered(
      key.id,
      limited,
      limited ? outcome.retryAfterMs : undefined,
      sentAt,
      x.probe,
    );
  } else if (x.probe) {
    backoff.probeLost();
  }
  x.probe = false;
  backoff.settled();
}

/** The upstream is being asked (counted until its answer, or its absence, is read). */
export function sendingUpstream(x: Exchange): void {
  x.rt.backoff?.sending();
}

/** No answer (network error, timeout, client gone); a probe lost lets another request probe. */
export function lostAnswer(x: Exchange): void {
  if (x.probe) x.rt.backoff?.probeLost();
  x.probe = false;
  x.rt.backoff?.settled();
}

/**
 * After an attempt that ended in a 429: whether the provider is now paused,
 * so that the request waits out the pause (not counted as a retry). While
 * the provider may be refusing every key (answers of other keys still on
 * their way, none a success since this one left), it first waits for the
 * next answer, which may start the pause, rather than burn another key.
 */
export async function providerPaused(
  x: Exchange,
  outcome: Outcome,
  sentAt: number,
): Promise<boolean> {
  const backoff = x.rt.backoff;
  if (outcome.kind !== "rate_limited" || backoff === undefined) return false;
  if (!outcome.daily) {
    const held = backoff.holdRetry(sentAt);
    if (held !== undefined) await held;
  }
  return backoff.pause !== undefined;
}

/** The account stage's part: the key's tokens per minute learn what the answer used. */
export function chargeKey(x: Exchange, answerBytes: number): void {
  if (x.keyCost === 0 || x.key === undefined || x.attempts === 0) return;
  // keyCost × 4 stands for the body's bytes: charge() adds only what the answer's part adds.
  const used = x.usedTokens ?? estimateTokens(x.keyCost * 4, answerBytes);
  x.rt.pacing?.charge(x.key, x.keyCost, used);
}
