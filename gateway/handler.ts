import type { GatewayConfig, ServiceStyle } from "../config/mod.ts";
import { classifyResponse, type Outcome, type PooledKey } from "../keys/mod.ts";
import { type Clock, type Refusal, TimeoutSweeper } from "../limiter/mod.ts";
import type { Drain } from "./drain.ts";
import { clientCredential, setUpstreamAuth, timingSafeEqual } from "./auth.ts";
import { type Bytes, readBody } from "./body.ts";
import { corsHeaders, preflight } from "./cors.ts";
import { disguise } from "./disguise.ts";
import { errorResponse, type GatewayError } from "./errors.ts";
import {
  appendGatewayHeaders,
  type ClientHead,
  readClientHead,
  type RelayHead,
  relayResponseHeaders,
  upstreamRequestHeaders,
} from "./headers.ts";
import { isoTime, type LogLine } from "./log.ts";
import { relayBody, type RelayEnd } from "./relay.ts";
import { requestId } from "./request_id.ts";
import { type RequestTarget, requestTarget, type Route, route, serviceName } from "./route.ts";
import type { ServiceRuntime } from "./runtime.ts";

/** What the request pipeline needs; everything is injected. */
export interface HandlerDeps {
  config: GatewayConfig;
  runtimes: ReadonlyMap<string, ServiceRuntime>;
  fetch: typeof fetch;
  clock: Clock;
  log: (line: LogLine) => void;
  random: () => number;
  /** Counts responses in flight; once closing, new requests are refused. */
  drain: Drain;
}

const SUCCESS: Outcome = Object.freeze({ kind: "success" });

/** The answer to a request that arrives while this instance drains, or waited in its queue. */
const CLOSING: GatewayError = Object.freeze({
  status: 503,
  type: "api_error",
  code: "gateway_closing",
  message: "This gateway instance is shutting down; retry.",
  retryAfterMs: 1000,
  closeConnection: true,
});

/** Routes remembered per handler (see `routeOf`). */
const ROUTE_CACHE_SIZE = 1024;

/** Error bodies are read whole to classify them; larger ones are cut here. */
const MAX_ERROR_BODY = 1024 * 1024;

/** The request as it walks the stages. */
interface Exchange {
  req: Request;
  target: RequestTarget;
  /** The client's headers, read once. */
  head: ClientHead;
  /** The CORS headers of every answer (see {@linkcode corsHeaders}). */
  cors: ReturnType<typeof corsHeaders>;
  id: string;
  started: number;
  rt: ServiceRuntime;
  style: ServiceStyle;
  deadline: number;
  attempts: number;
  key: PooledKey | undefined;
  queueMs: number;
  upstreamMs: number | undefined;
  /** The latest upstream answer (kept with the record: see `_lastRelayed` in createHandler). */
  upstream: Response | undefined;
  /**
   * The clock's latest reading for this request, taken at the stages that
   * need one (admission, the upstream's answer): the stages in between
   * reuse it rather than read the clock a dozen times a request.
   */
  now: number;
}

/** An upstream answer that will not be retried further, kept to give the client. */
interface Settled {
  status: number;
  headers: Headers;
  body: Bytes;
}

function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = () => {
      clock.clearTimeout(timer);
      resolve(false);
    };
    const timer = clock.setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

async function readSmall(res: Response): Promise<Bytes> {
  if (!res.body) return new Uint8Array();
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size < MAX_ERROR_BODY) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
  }
  if (size >= MAX_ERROR_BODY) await reader.cancel().catch(() => {});
  const out = new Uint8Array(size);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}

function decodeForClassify(body: Uint8Array, headers: Headers): string {
  // A body the upstream gzipped anyway is not readable here; classify on status alone.
  if (headers.has("content-encoding") && headers.get("content-encoding") !== "identity") return "";
  return new TextDecoder().decode(body.subarray(0, 64 * 1024));
}

/**
 * The request pipeline: disguise → authenticate → route → read body →
 * admit (in-flight slot) → [pick key → take token → call upstream]
 * repeated on retryable failures → relay → account.
 */
export function createHandler(deps: HandlerDeps): (req: Request) => Promise<Response> {
  const { config, runtimes, clock, log, drain } = deps;
  const password = config.password;
  const prefixes = [...runtimes.keys()].map((n) => `/${n}`).join(", ");
  // One timer for every request's first-byte timeout, at most 1/20 of it late (≤ 1 s).
  const firstByteTimeouts = new TimeoutSweeper(
    clock,
    Math.min(1000, Math.max(5, config.firstByteTimeoutMs / 20)),
  );

  // Clients send the same few paths again and again: their routes are kept
  // (at most ROUTE_CACHE_SIZE). Only paths without a query, so that no
  // gemini ?key= secret is kept as a key.
  const routes = new Map<string, Route>();

  // The last relayed request's objects (its Request, the upstream Response
  // and its body stream, the answer, the request record and the server's
  // info on the connection), held until the next request replaces them;
  // and, from the first request on, a URL like the one fetch parses and
  // drops, and a request body stream as it is before it is read. When a full
  // GC finds no object of a hidden class alive, V8 drops the class and
  // deoptimizes every function compiled against it. The collection V8 runs
  // after a few idle seconds finds no request in flight: the classes of
  // Request, Response, Headers, streams, URL and this module's record went,
  // and with them about 100 functions of the request path, compiled again
  // (about 150 ms of CPU) when traffic came back. These objects kept alive
  // keep most of those classes (see BENCHMARKS.md).
  let _lastRelayed: unknown[] | undefined;
  let _exemplars: unknown[] | undefined;

  function routeOf(target: RequestTarget, style: ServiceStyle) {
    const cached = target.search === "" ? routes.get(target.path) : undefined;
    if (cached) return cached;
    const r = route(target, config.services, style === "gemini" ? ["key"] : []);
    if (target.search === "" && !("error" in r)) {
      if (routes.size >= ROUTE_CACHE_SIZE) routes.clear();
      routes.set(target.path, r);
    }
    return r;
  }

  function answer(x: Exchange, err: GatewayError): Response {
    account(x, err.status, err.code);
    return errorResponse(x.style, err, appendGatewayHeaders([], x.id, x.cors));
  }

  function account(
    x: Exchange,
    status: number,
    outcome: string,
    bytes?: number,
    now = clock.now(),
  ): void {
    log({
      t: isoTime(now),
      id: x.id,
      service: x.rt.service.name,
      method: x.req.method,
      status,
      outcome,
      attempts: x.attempts,
      key: x.key?.id,
      queueMs: x.queueMs,
      upstreamMs: x.upstreamMs,
      totalMs: now - x.started,
      bytes,
    });
  }

  function refused(x: Exchange, r: Refusal): Response {
    if (r.reason === "closing") return answer(x, CLOSING);
    const message = r.reason === "queue_full"
      ? `The gateway queue for ${x.rt.service.name} is full; retry later.`
      : r.reason === "queue_timeout"
      ? `Waited too long for capacity on ${x.rt.service.name}; retry later.`
      : "The client went away.";
    return answer(x, {
      status: r.reason === "aborted" ? 499 : 429,
      type: "rate_limit_error",
      code: `gateway_${r.reason}`,
      message,
      retryAfterMs: r.retryAfterMs,
    });
  }

  function unknownService(req: Request, target: RequestTarget): Response {
    const head = readClientHead(req.headers);
    const cred = clientCredential(head, target.search, "openai");
    if (password === undefined || cred === undefined || !timingSafeEqual(cred, password)) {
      return disguise(target.path, req.method);
    }
    return errorResponse(
      "openai",
      {
        status: 404,
        type: "invalid_request_error",
        code: "unknown_service",
        message: `No service at /${serviceName(target.path)}. Valid prefixes: ${prefixes}.`,
      },
      appendGatewayHeaders([], requestId(), corsHeaders(head.origin, req.method)),
    );
  }

  /** Calls the upstream once; resolves to its response or why there is none. */
  async function callUpstream(
    x: Exchange,
    r: Route,
    key: PooledKey,
    body: Bytes | undefined,
  ): Promise<Response | "timeout" | "network" | "aborted"> {
    const sent = x.now;
    const headers = upstreamRequestHeaders(x.head);
    setUpstreamAuth(headers, x.style, key.secret, r.geminiNative);
    // One controller for both reasons to stop: the client leaving (at any
    // time, the body included) and no headers within firstByteTimeoutMs.
    const upstream = new AbortController();
    if (x.req.signal.aborted) return "aborted";
    x.req.signal.addEventListener("abort", () => upstream.abort());
    let timedOut = false;
    const cancelTimeout = firstByteTimeouts.at(sent + config.firstByteTimeoutMs, () => {
      timedOut = true;
      upstream.abort();
    });
    try {
      const res = await deps.fetch(r.upstream, {
        method: x.req.method,
        headers,
        body,
        redirect: "manual",
        signal: upstream.signal,
      });
      x.now = clock.now();
      x.upstreamMs = x.now - sent;
      return res;
    } catch {
      if (x.req.signal.aborted) return "aborted";
      return timedOut ? "timeout" : "network";
    } finally {
      cancelTimeout();
    }
  }

  function respondSettled(x: Exchange, s: Settled, release: () => void, outcome: string): Response {
    release();
    const { headers } = relayResponseHeaders(s.headers, x.id, x.cors);
    account(x, s.status, outcome, s.body.byteLength);
    return new Response(x.req.method === "HEAD" ? null : s.body, { status: s.status, headers });
  }

  /**
   * Relays a successful answer. A body of known length that is not an event
   * stream (the usual JSON completion) is handed to the runtime as it is, so
   * its bytes never pass through JavaScript; such an upstream has finished
   * its work once it sends the headers, so the slot goes back then. Streams,
   * and bodies of unknown length, pass chunk by chunk through
   * {@linkcode relayBody}, which holds the slot to the last byte and ends
   * them after `idleTimeoutMs` of silence.
   */
  function respondSuccess(x: Exchange, res: Response, release: () => void): Response {
    const head = relayResponseHeaders(res.headers, x.id, x.cors);
    if (head.eventStream || head.contentLength === null || !res.body) {
      return respondStream(x, res, head, release);
    }
    release();
    account(x, res.status, "complete", Number(head.contentLength), x.now);
    return new Response(x.req.method === "HEAD" ? null : res.body, {
      status: res.status,
      headers: head.headers,
    });
  }

  const sseRelay = { idleTimeoutMs: config.idleTimeoutMs, clock, eventStream: true, drain };
  const bodyRelay = { ...sseRelay, eventStream: false };
  const relayOptions = (eventStream: boolean) => eventStream ? sseRelay : bodyRelay;

  function respondStream(
    x: Exchange,
    res: Response,
    { headers, eventStream }: RelayHead,
    release: () => void,
  ): Response {
    if (!res.body) {
      release();
      account(x, res.status, "complete", 0);
      return new Response(null, { status: res.status, headers });
    }
    const body = relayBody(res.body, relayOptions(eventStream), (end: RelayEnd, bytes) => {
      release();
      account(x, res.status, end, bytes);
    });
    return new Response(body, { status: res.status, headers });
  }

  function backoffMs(retry: number): number {
    return Math.min(4000, 250 * 2 ** retry) * (0.5 + deps.random());
  }

  /** Attempts with key rotation and retries; the slot is held throughout. */
  async function relay(x: Exchange, r: Route, body: Bytes | undefined, release: () => void) {
    let tried: Set<string> | undefined; // made on the first retry: most requests need none
    let last: Settled | undefined;
    let lastFailure: "timeout" | "network" | undefined;
    for (let attempt = 0; attempt <= config.maxRetries; attempt++) {
      if (attempt > 0) x.now = clock.now();
      if (x.key) (tried ??= new Set()).add(x.key.id);
      // Pick key: wait for the earliest resting key when all rest.
      let pick = x.rt.pool.pick(x.now, tried);
      while (!pick.ok) {
        const now = clock.now();
        if (pick.untilMs > x.deadline) {
          if (last) return respondSettled(x, last, release, "exhausted");
          release();
          return answer(x, {
            status: 429,
            type: "rate_limit_error",
            code: "gateway_keys_resting",
            message:
              `Every ${x.rt.service.name} key is resting after upstream rate limits or errors; retry later.`,
            retryAfterMs: pick.untilMs - now,
          });
        }
        if (!(await sleep(clock, pick.untilMs - now, x.req.signal))) {
          release();
          return answer(x, {
            status: 499,
            type: "api_error",
            code: "client_closed",
            message: "Client closed.",
          });
        }
        x.now = clock.now();
        pick = x.rt.pool.pick(x.now, tried);
      }
      const key = pick.key;
      if (!x.rt.limiter.tryToken(x.now)) {
        const token = await x.rt.limiter.takeToken({
          deadline: x.deadline,
          signal: x.req.signal,
          priority: attempt > 0,
        });
        if (!token.ok) {
          if (last) return respondSettled(x, last, release, "exhausted");
          release();
          return refused(x, token);
        }
        x.now = clock.now();
      }
      x.key = key;
      x.attempts = attempt + 1;
      const res = await callUpstream(x, r, key, body);
      if (typeof res !== "string") x.upstream = res;
      let outcome: Outcome;
      if (res === "aborted") {
        release();
        return answer(x, {
          status: 499,
          type: "api_error",
          code: "client_closed",
          message: "Client closed.",
        });
      }
      if (typeof res === "string") {
        lastFailure = res;
        outcome = { kind: "upstream_error" };
      } else if (res.status < 400) {
        x.rt.pool.report(key, SUCCESS, x.now);
        return respondSuccess(x, res, release);
      } else {
        // Error bodies are small: read them to classify, and to answer with if this is the last try.
        const bytes = await readSmall(res).catch(() => new Uint8Array());
        outcome = classifyResponse(
          res.status,
          res.headers,
          decodeForClassify(bytes, res.headers),
          clock.now(),
        );
        last = { status: res.status, headers: res.headers, body: bytes };
        lastFailure = undefined;
      }
      x.rt.pool.report(key, outcome, clock.now());
      if (outcome.kind === "client_error" || outcome.kind === "success") {
        return respondSettled(x, last!, release, "client_error");
      }
      if (attempt === config.maxRetries) break;
      if (outcome.kind === "upstream_error") {
        const wait = backoffMs(attempt);
        if (clock.now() + wait > x.deadline) break;
        if (!(await sleep(clock, wait, x.req.signal))) {
          release();
          return answer(x, {
            status: 499,
            type: "api_error",
            code: "client_closed",
            message: "Client closed.",
          });
        }
      }
    }
    if (last && lastFailure === undefined) return respondSettled(x, last, release, "exhausted");
    release();
    return answer(
      x,
      lastFailure === "timeout"
        ? {
          status: 504,
          type: "api_error",
          code: "upstream_timeout",
          message:
            `The ${x.rt.service.name} upstream sent no response within ${config.firstByteTimeoutMs} ms.`,
        }
        : {
          status: 502,
          type: "api_error",
          code: "upstream_unreachable",
          message: `The ${x.rt.service.name} upstream could not be reached.`,
        },
    );
  }

  /**
   * Counts every request on a service path as in flight until its response
   * is over (the server says when; in process, when the handler answers and
   * any stream it relays has ended), so that a drain can wait for it.
   */
  return function handle(req: Request, info?: Deno.ServeHandlerInfo): Promise<Response> {
    const target = requestTarget(req.url);
    const rt = runtimes.get(serviceName(target.path));
    if (!rt) return Promise.resolve(unknownService(req, target));
    const done = drain.begin();
    if (info) {
      info.completed.then(done, done);
      return serve(req, info, target, rt);
    }
    const answered = serve(req, info, target, rt);
    answered.then(done, done);
    return answered;
  };

  async function serve(
    req: Request,
    info: Deno.ServeHandlerInfo | undefined,
    target: RequestTarget,
    rt: ServiceRuntime,
  ): Promise<Response> {
    const started = clock.now();
    const head = readClientHead(req.headers);
    const x: Exchange = {
      req,
      target,
      head,
      cors: corsHeaders(head.origin, req.method),
      id: requestId(started),
      started,
      rt,
      style: rt.service.style,
      deadline: started + config.queueTimeoutMs,
      attempts: 0,
      // Present from the start, so every request's record has one shape
      // whichever stage it ends at (one shape keeps account() optimized).
      key: undefined,
      queueMs: 0,
      upstreamMs: undefined,
      upstream: undefined,
      now: started,
    };
    if (drain.closing) return answer(x, CLOSING);
    if (req.method === "OPTIONS") return preflight(req, x.id);

    // Authenticate.
    if (password === undefined) {
      return answer(x, {
        status: 503,
        type: "api_error",
        code: "gateway_not_configured",
        message:
          "This gateway has no ACCESS_PASSWORD. The operator must set it in the deployment's environment variables.",
      });
    }
    const cred = clientCredential(x.head, target.search, x.style);
    if (cred === undefined || !timingSafeEqual(cred, password)) {
      return answer(x, {
        status: 401,
        type: "authentication_error",
        code: "invalid_api_key",
        message: cred === undefined
          ? "Missing API key: send the gateway password as a Bearer token or x-api-key."
          : "Incorrect API key: use the gateway password.",
      });
    }

    // Route.
    const r = routeOf(target, x.style);
    if ("error" in r) {
      return answer(x, {
        status: 400,
        type: "invalid_request_error",
        code: "invalid_path",
        message: r.error === "bad_path" ? r.message : "Unknown service.",
      });
    }
    if (rt.pool.keys.length === 0) {
      return answer(x, {
        status: 503,
        type: "api_error",
        code: "no_keys",
        message: `No keys are configured for ${rt.service.name}: set ${rt.service.envKey}.`,
      });
    }

    // Read the body whole: a retry must be able to send it again.
    const read = await readBody(req, config.maxBodyBytes, x.head.contentLength);
    if (!read.ok) {
      return answer(
        x,
        read.reason === "too_large"
          ? {
            status: 413,
            type: "request_too_large",
            code: "request_too_large",
            message: `The request body is larger than ${config.maxBodyBytes} bytes.`,
          }
          : {
            status: 400,
            type: "invalid_request_error",
            code: "unreadable_body",
            message: "The request body could not be read.",
          },
      );
    }

    // Admit: an in-flight slot, first in first out.
    // The usual request finds one free and waits for nothing (no promise).
    x.now = clock.now();
    const refreshing = rt.fresh(x.now);
    let slot = refreshing ? undefined : rt.limiter.trySlot(x.now);
    if (slot === undefined) {
      slot = await rt.limiter.acquireSlot({ deadline: x.deadline, signal: req.signal });
      if (refreshing) await refreshing;
      x.now = clock.now();
    }
    x.queueMs = x.now - started;
    if (!slot.ok) return refused(x, slot);
    try {
      const response = await relay(x, r, read.body, slot.release);
      _lastRelayed = [x, response, x.upstream?.body, info];
      // Once: after req.bytes(), reading req.body makes a new stream (about 2 µs).
      _exemplars ??= [new URL("http://127.0.0.1/"), req.body]; // no request data in the URL
      return response;
    } catch (e) {
      slot.release();
      log({ id: x.id, service: rt.service.name, event: "internal_error", error: String(e) });
      return answer(x, {
        status: 500,
        type: "api_error",
        code: "gateway_error",
        message: "Internal gateway error.",
      });
    }
  }
}
