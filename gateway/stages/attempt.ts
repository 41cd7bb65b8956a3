import { type Pick, type PooledKey } from "../../keys/mod.ts";
import { classifyResponse, type Outcome } from "../../providers/mod.ts";
import { type Bytes, joinChunks, readUpTo } from "./body.ts";
import { gatewayErrors } from "../error_catalogue.ts";
import type { Exchange } from "../exchange.ts";
import type { StageDeps } from "../stage_deps.ts";
import { countUpstream } from "./account.ts";
import { modelOf } from "../../status/mod.ts";
import { answer, respondSettled, respondSuccess } from "./respond.ts";
import type { Route } from "./route.ts";
import { callUpstream } from "./upstream_call.ts";
import { NEXT_TARGET, waitLimit } from "./group_stage.ts";
import { afterRefusal, type Ended, endWaiting, giveUp, type Tries } from "./attempt_end.ts";
import { bodyEncoded } from "../headers.ts";
import { spendBudget, teamToken, waitOptions } from "./team_stages.ts";
import {
  costOnKeys,
  lostAnswer,
  pickKey,
  providerTurn,
  readAnswer,
  sendingUpstream,
  waitForRoom,
} from "./key_stages.ts";

const SUCCESS: Outcome = Object.freeze({ kind: "success" });

/** Attempts refused during a provider-wide pause that are not counted as retries, at most. */
const MAX_PAUSED_ATTEMPTS = 8;

/** Error bodies are read whole to classify them; larger ones are cut here. */
const MAX_ERROR_BODY = 1024 * 1024;

/** Where one attempt left the request: answered, or to be tried again. */
type AttemptEnd = { answer: Response } | { retry: Outcome; sentAt: number };

/**
 * The attempt stage, holding the request's slot throughout: pick a key
 * (waiting for the earliest resting one when all rest) → take a token →
 * call the upstream → classify. A retryable outcome (429, 401/403/quota,
 * 5xx, no answer) goes back to pick a key, another one when there is one,
 * up to `maxRetries` times; 5xx and network errors back off first. Every
 * way out accounts for the request, which hands its slot back (`x.slot`) —
 * except a model group's target that failed when another may answer
 * ({@linkcode NEXT_TARGET}: the switch hands the slot back, nothing is
 * accounted yet).
 */
export async function attempt(
  p: StageDeps,
  x: Exchange,
  r: Route,
  body: Bytes | undefined,
): Promise<Ended> {
  const tries: Tries = { tried: undefined, last: undefined, lastFailure: undefined, keyFaults: 0 };
  const tooLarge = costOnKeys(x, body);
  if (tooLarge) return answer(p, x, tooLarge);
  if (p.telemetry.enabled) x.model = modelOf(body);
  let paused = 0;
  for (let n = 0; n <= p.config.maxRetries; n++) {
    if (n > 0) x.now = p.clock.now();
    if (x.key) (tries.tried ??= new Set()).add(x.key.id);
    const held = providerTurn(p, x);
    if (held !== undefined) {
      const err = await held;
      if (err) return endWaiting(p, x, tries, err);
    }
    // The usual request finds a key and a token at once: no promise is made for either.
    const pick = pickKey(x, tries.tried);
    let key = pick.ok ? pick.key : await waitForKey(p, x, tries, pick, n > 0);
    if (!isKey(key)) return key;
    if (x.team) {
      const turn = teamToken(p, x, n > 0);
      const denied = turn instanceof Promise ? await turn : turn;
      if (denied) return endWaiting(p, x, tries, denied);
    }
    if (!x.rt.limiter.tryToken(x.now)) {
      const refused = await waitForToken(p, x, tries, n > 0);
      if (refused) return refused;
    }
    if (x.team) {
      const spent = spendBudget(p, x);
      const denied = spent instanceof Promise ? await spent : spent;
      if (denied) return endWaiting(p, x, tries, denied);
    }
    // The waits for a token may have been long: a key that began to rest
    // meanwhile (here, or in another instance's view read since) is not sent.
    if ((x.rt.pool.health(key.id)?.until ?? 0) > x.now) {
      const again = pickKey(x, tries.tried);
      key = again.ok ? again.key : await waitForKey(p, x, tries, again, n > 0);
      if (!isKey(key)) return key;
    }
    const end = await tryOnce(p, x, r, key, body, tries);
    if ("answer" in end) return end.answer;
    const next = await afterRefusal(p, x, tries, end, n, paused < MAX_PAUSED_ATTEMPTS);
    if (next === "stop") break;
    if (next === "paused") {
      paused++;
      n--; // not counted as a retry
    } else if (next !== "retry") return next;
  }
  return giveUp(p, x, tries);
}

/**
 * No key can go now: when one merely has no room (its quota), waits for its
 * turn; when every key rests, waits for the earliest to return, preferring
 * untried ones. The answer when neither comes within the deadline.
 */
async function waitForKey(
  p: StageDeps,
  x: Exchange,
  tries: Tries,
  pick: Pick & { ok: false },
  retry: boolean,
): Promise<PooledKey | Ended> {
  for (let repicks = 0;;) {
    if (pick.waitOn !== undefined) {
      const key = pick.waitOn;
      const err = await waitForRoom(p, x, key, retry);
      if (!err) return key;
      // Its day turned out spent (the key rests now): another key may still have room.
      const rested = (x.rt.pool.health(key.id)?.until ?? 0) > x.now;
      if (!rested || ++repicks > x.rt.pool.keys.length) {
        return endWaiting(p, x, tries, err);
      }
      const again = pickKey(x, tries.tried);
      if (again.ok) return again.key;
      pick = again;
      continue;
    }
    const now = p.clock.now();
    // Every key rests: past the deadline, or (a group's request) past its switchAfterMs.
    if (pick.untilMs > waitLimit(x, now)) {
      return endWaiting(
        p,
        x,
        tries,
        gatewayErrors.keysResting(x.rt.service.name, pick.untilMs - now),
      );
    }
    // Woken sooner when a key may be back (a success, an admin's enable).
    if (!(await x.rt.pool.waitForReturn(pick.untilMs, x.req.signal))) {
      return answer(p, x, gatewayErrors.clientClosed());
    }
    x.now = p.clock.now();
    const next = pickKey(x, tries.tried);
    if (next.ok) return next.key;
    pick = next;
  }
}

/** No token in the local stock: waits in line for one (each attempt takes one); an answer if refused. */
async function waitForToken(
  p: StageDeps,
  x: Exchange,
  tries: Tries,
  retry: boolean,
): Promise<Ended | undefined> {
  const token = await x.rt.limiter.takeToken(waitOptions(x, retry));
  if (!token.ok) {
    return endWaiting(
      p,
      x,
      tries,
      gatewayErrors.refused(token.reason, x.rt.service.name, token.retryAfterMs),
    );
  }
  x.now = p.clock.now();
  return undefined;
}

/** Calls the upstream with `key` and classifies what came back; tells the key pool. */
async function tryOnce(
  p: StageDeps,
  x: Exchange,
  r: Route,
  key: PooledKey,
  body: Bytes | undefined,
  tries: Tries,
): Promise<AttemptEnd> {
  x.key = key;
  x.attempts++;
  const sentAt = x.now;
  sendingUpstream(x);
  const res = await callUpstream(p, x, r, key, body);
  if (res === "aborted") {
    lostAnswer(x);
    return { answer: answer(p, x, gatewayErrors.clientClosed()) };
  }
  countUpstream(p, x, key.id, res, sentAt);
  let outcome: Outcome;
  if (typeof res === "string") {
    lostAnswer(x);
    tries.lastFailure = res;
    outcome = { kind: "upstream_error" };
  } else if (res.status < 400) {
    x.upstream = res;
    x.rt.pool.report(key, SUCCESS, x.now, faultOwner(x), sentAt);
    readAnswer(p, x, key, res.headers, SUCCESS, sentAt);
    const relayed = respondSuccess(p, x, res);
    return { answer: relayed instanceof Promise ? await relayed : relayed };
  } else {
    x.upstream = res;
    outcome = await classifyRefusal(p, x, res, tries);
  }
  const keyFault = outcome.kind === "key_suspect" || outcome.kind === "key_rejected";
  if (keyFault && tries.keyFaults++ > 0) {
    // A second key refused for the same request: the request, not the keys, is the suspect.
    p.log({
      id: x.id,
      service: x.rt.service.name,
      event: "key_fault_suspect_request",
      key: key.id,
    });
    return { answer: respondSettled(p, x, tries.last!, "client_error") };
  }
  x.rt.pool.report(key, outcome, p.clock.now(), faultOwner(x));
  if (typeof res !== "string") readAnswer(p, x, key, res.headers, outcome, sentAt);
  if (outcome.kind === "client_error" || outcome.kind === "success") {
    return { answer: respondSettled(p, x, tries.last!, "client_error") };
  }
  return { retry: outcome, sentAt };
}

/** Whose requests a key fault is counted against: the team, or every password user as one. */
function faultOwner(x: Exchange): string {
  return x.team?.team.name ?? "";
}

/** The key to send with, as opposed to the request's end. */
function isKey(k: PooledKey | Ended): k is PooledKey {
  return k !== NEXT_TARGET && !(k instanceof Response);
}

/**
 * What an upstream's error answer means (rate limit, key fault, the
 * request's own fault, the upstream's); kept as the last answer, to send
 * the client if no retry does better.
 */
async function classifyRefusal(
  p: StageDeps,
  x: Exchange,
  res: Response,
  tries: Tries,
): Promise<Outcome> {
  // Error bodies are small: read them to classify, and to answer with if this is the last try.
  const bytes = await readSmall(res).catch(() => new Uint8Array());
  tries.last = { status: res.status, headers: res.headers, body: bytes };
  tries.lastFailure = undefined;
  return classifyResponse(
    res.status,
    res.headers,
    decodeForClassify(bytes, res.headers),
    p.clock.now(),
    x.rt.service.rateLimitHeaders,
  );
}

async function readSmall(res: Response): Promise<Bytes> {
  if (!res.body) return new Uint8Array();
  const { chunks, rest } = await readUpTo(res.body, MAX_ERROR_BODY);
  await rest?.cancel().catch(() => {});
  return chunks.length === 0 ? new Uint8Array() : joinChunks(chunks);
}

function decodeForClassify(body: Uint8Array, headers: Headers): string {
  // A body the upstream gzipped anyway is not readable here; classify on status alone.
  if (bodyEncoded(headers)) return "";
  return new TextDecoder().decode(body.subarray(0, 64 * 1024));
}
