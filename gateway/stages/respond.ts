import { account } from "./account.ts";
import { type Bytes, joinChunks, readUpTo } from "./body.ts";
import { errorResponse, type GatewayError } from "../errors.ts";
import { gatewayErrors } from "../error_catalogue.ts";
import { readProviderError } from "../../providers/mod.ts";
import { type Exchange, handSlotBack } from "../exchange.ts";
import {
  appendGatewayHeaders,
  bodyEncoded,
  type RelayHead,
  relayResponseHeaders,
} from "../headers.ts";
import type { StageDeps } from "../stage_deps.ts";
import { relayBody, type RelayEnd } from "./relay.ts";
import { modelAllowed } from "../../teams/mod.ts";
import { SseUsageMeter, usageFromJson, usageSplitFromJson } from "../../providers/mod.ts";
import { listsModels } from "./team_stages.ts";

/** An upstream answer that will not be retried further, kept to give the client. */
export interface Settled {
  status: number;
  headers: Headers;
  body: Bytes;
}

/** Answers with one of kvgate's own errors (see `error_catalogue.ts`), and accounts for it. */
export function answer(p: StageDeps, x: Exchange, err: GatewayError): Response {
  account(p, x, err.status, err.code);
  return errorResponse(x.style, err, appendGatewayHeaders([], x.id, x.cors));
}

/**
 * The provider refused the gateway's key (401) or the request with it
 * (403): said in kvgate's own words, with the provider's structured code
 * only. Its own body can quote the key (OpenAI masks all but 12 characters
 * of it) and, for a 401, would tell the client its own credential is wrong.
 */
function keyRefusal(x: Exchange, s: Settled): GatewayError {
  const e = bodyEncoded(s.headers) ? undefined : readProviderError(decoder.decode(s.body));
  return gatewayErrors.upstreamRefused(
    x.rt.service.name,
    s.status,
    e?.code ?? e?.type ?? e?.status,
  );
}

/** Gives the client an upstream answer read whole (an error, or the last of the retries). */
export function respondSettled(
  p: StageDeps,
  x: Exchange,
  s: Settled,
  outcome: string,
): Response {
  if (s.status === 401 || s.status === 403) return answer(p, x, keyRefusal(x, s));
  const { headers } = relayResponseHeaders(s.headers, x.id, x.cors);
  account(p, x, s.status, outcome, s.body.byteLength);
  return new Response(x.req.method === "HEAD" ? null : s.body, { status: s.status, headers });
}

/**
 * Relays a successful answer. A body of known length that is not an event
 * stream (the usual JSON completion) is handed to the runtime as it is, so
 * its bytes never pass through JavaScript; such an upstream has finished
 * its work once it sends the headers, so the slot goes back then. Streams,
 * and bodies of unknown length, go the way {@linkcode pickRelay} says:
 * handed to the runtime (slot held until the server says the answer is
 * over), or chunk by chunk through {@linkcode relayBody}, which holds the
 * slot to the last byte, ends them after `idleTimeoutMs` of silence, reads
 * their usage, and lets a drain end them with an error event.
 */
export function respondSuccess(
  p: StageDeps,
  x: Exchange,
  res: Response,
): Response | Promise<Response> {
  const head = relayResponseHeaders(res.headers, x.id, x.cors);
  if (!head.eventStream && res.body && mustRead(p, x)) {
    if (head.contentLength === null || Number(head.contentLength) <= MAX_READ_BYTES) {
      return respondCounted(p, x, res, head);
    }
    usageUnread(p, x);
  }
  if (head.eventStream || head.contentLength === null || !res.body) {
    x.relay = pickRelay(p, x);
    if (x.relay === "native" && x.info !== undefined && res.body) {
      return respondNative(p, x, res, head, x.info);
    }
    return respondStream(p, x, res, head);
  }
  account(p, x, res.status, "complete", Number(head.contentLength), x.now);
  return new Response(x.req.method === "HEAD" ? null : res.body, {
    status: res.status,
    headers: head.headers,
  });
}

/**
 * How this request's stream is relayed, decided once: natively (a bare
 * proxy's cost) unless something must read it — its usage for a team's
 * tokens budget, the key's `tpm` or OpenTelemetry's token metrics — or the
 * service says `"streamRelay": "observe"`. In process (no server to say
 * when an answer is over) every stream is observed.
 */
export function pickRelay(p: StageDeps, x: Exchange): "native" | "observe" {
  if (x.rt.service.streamRelay === "observe" || x.info === undefined) return "observe";
  return readsUsage(p, x) ? "observe" : "native";
}

/** Whether the answer's usage must be read: for a team's tokens budget, the key's `tpm`, or OpenTelemetry. */
function readsUsage(p: StageDeps, x: Exchange): boolean {
  return x.keyCost > 0 || p.telemetry.enabled || x.team?.team.daily.tokens !== undefined;
}

/**
 * A stream handed to the runtime as it is (`streamRelay: "native"`): no
 * JavaScript per chunk, so it costs what a bare proxy costs. The slot is
 * held until the server says the answer is over (its last byte sent, or the
 * client gone: the server does not say which, so the log says `native`).
 * What needs the chunks is given up: no idle timeout, no byte count, and a
 * drain cannot end it at an event boundary: one still open when the drain
 * ends is logged `drained` and its slot handed back, and the process's exit
 * cuts it (the client sees an error, never a clean end).
 */
function respondNative(
  p: StageDeps,
  x: Exchange,
  res: Response,
  { headers }: RelayHead,
  info: Deno.ServeHandlerInfo,
): Response {
  let over = false;
  const end = (outcome: "native" | "drained") => {
    if (over) return;
    over = true;
    leaveDrain();
    account(p, x, res.status, outcome);
  };
  const atExit = () => end("drained");
  const leaveDrain = p.drain.open({ endSoon: atExit, endNow: atExit });
  const served = () => end("native");
  info.completed.then(served, served);
  return new Response(res.body, { status: res.status, headers });
}

function respondStream(
  p: StageDeps,
  x: Exchange,
  res: Response,
  { headers, eventStream }: RelayHead,
): Response {
  if (!res.body) {
    account(p, x, res.status, "complete", 0);
    return new Response(null, { status: res.status, headers });
  }
  const options = eventStream ? p.sseRelay[x.style] : p.bodyRelay;
  // A team's stream, one on a key that counts tokens, or any with telemetry on, is read for its usage.
  const meter = (x.team !== undefined || x.keyCost > 0 || p.telemetry.enabled) && eventStream
    ? new SseUsageMeter()
    : undefined;
  const body = relayBody(res.body, options, (end: RelayEnd, bytes) => {
    if (meter !== undefined) {
      x.usedTokens = meter.tokens;
      x.usedSplit = meter.split;
    }
    account(p, x, res.status, end, bytes);
  }, meter === undefined ? undefined : (chunk) => meter.push(chunk));
  return new Response(body, { status: res.status, headers });
}

/**
 * Whether a JSON answer must be read: to count the tokens it reports
 * against a team's tokens budget or the key's `tpm`, or to cut a model list
 * to the team's models, or for OpenTelemetry's token usage. Otherwise it
 * passes as it is (reading it costs about 6% more CPU per request), and its
 * tokens are the README's estimate.
 */
function mustRead(p: StageDeps, x: Exchange): boolean {
  if (readsUsage(p, x)) return true;
  return x.team?.team.models !== undefined && listsModels(x);
}

/**
 * A JSON answer read whole to count the tokens it reports (and, for a team
 * with a model list, to keep only its models in a model list).
 */
async function respondCounted(
  p: StageDeps,
  x: Exchange,
  res: Response,
  head: RelayHead,
): Promise<Response> {
  let read: Awaited<ReturnType<typeof readUpTo>>;
  try {
    read = await readUpTo(res.body!, MAX_READ_BYTES);
  } catch {
    return answer(p, x, { ...UNREADABLE, message: `The ${x.rt.service.name} answer broke off.` });
  }
  if (read.rest !== undefined) {
    // Longer than may be held: what was read, then the rest as it comes, its usage unread.
    usageUnread(p, x);
    const whole = new Response(restream(read.chunks, read.rest), res);
    return respondStream(p, x, whole, head);
  }
  handSlotBack(x);
  let bytes = joinChunks(read.chunks);
  const encoded = bodyEncoded(res.headers);
  let headers = head.headers;
  if (!encoded) {
    const text = decoder.decode(bytes);
    x.usedTokens = usageFromJson(text);
    if (p.telemetry.enabled) x.usedSplit = usageSplitFromJson(text);
    const models = x.team?.team.models;
    if (models !== undefined && listsModels(x)) {
      bytes = new TextEncoder().encode(keepModels(text, models));
      headers = headers.filter(([k]) => k !== "content-length");
    }
  }
  account(p, x, res.status, "complete", bytes.byteLength, p.clock.now());
  return new Response(x.req.method === "HEAD" ? null : bytes, { status: res.status, headers });
}

const decoder = new TextDecoder();

/** An answer too large to hold whole: relayed as it comes, counted at the estimate; said in the log. */
function usageUnread(p: StageDeps, x: Exchange): void {
  p.log({ id: x.id, service: x.rt.service.name, event: "usage_unread", reason: "too_large" });
}

/** The chunks already read, then the rest of the body. */
function restream(
  chunks: Uint8Array[],
  rest: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      if (i < chunks.length) return c.enqueue(chunks[i++]);
      const { done, value } = await rest.read();
      if (done) c.close();
      else c.enqueue(value);
    },
    cancel: (reason) => rest.cancel(reason),
  }, { highWaterMark: 0 });
}

/**
 * The largest answer read whole for the usage it reports (or a team's model
 * list): a larger one, or one of unknown length, passes through as it
 * comes and is counted at the estimate, so that no answer (a large file's
 * content) is ever held whole in memory.
 */
const MAX_READ_BYTES = 8 * 1024 * 1024;

const UNREADABLE = {
  status: 502,
  type: "api_error",
  code: "upstream_unreachable",
  message: "",
} as const;

/** A model list (`{data: [{id}]}` or gemini's `{models: [{name}]}`) cut to the allowed models. */
function keepModels(text: string, patterns: readonly string[]): string {
  try {
    const body = JSON.parse(text);
    const allowed = (m: { id?: string; name?: string }) =>
      modelAllowed(patterns, String(m.id ?? m.name ?? "").replace(/^models\//, ""));
    if (Array.isArray(body?.data)) body.data = body.data.filter(allowed);
    if (Array.isArray(body?.models)) body.models = body.models.filter(allowed);
    return JSON.stringify(body);
  } catch {
    return JSON.stringify({ object: "list", data: [] });
  }
}
