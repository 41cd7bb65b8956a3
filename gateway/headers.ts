/** Hop-by-hop headers (RFC 9110 §7.6.1): meaningful for one connection only. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * The client headers that go upstream: what the providers' SDKs need, and
 * nothing else. An allowlist, because what else a client sends can change
 * how the provider answers the shared key (`openai-organization` → 401
 * `mismatched_organization`; `origin` on Anthropic → a CORS 401) or tells
 * the provider about the client (`cookie`, `referer`, `x-forwarded-for`).
 */
const FORWARDED = new Set([
  "content-type",
  "content-encoding",
  "accept",
  "user-agent",
  "anthropic-version",
  "anthropic-beta",
  "openai-beta",
  "idempotency-key",
  "x-goog-api-client",
]);

/** The Stainless-built SDKs' (OpenAI's, Anthropic's) own headers: retry count, runtime, timeout. */
const STAINLESS = "x-stainless-";

/** True for a client header that is forwarded upstream. */
export function forwardedUpstream(name: string): boolean {
  return FORWARDED.has(name) || name.startsWith(STAINLESS);
}

/** The header names a `Connection` value lists (hop-by-hop by declaration), or none. */
function connectionNamed(connection: string | null): Set<string> | undefined {
  if (connection === null) return undefined;
  return new Set(connection.split(",").map((t) => t.trim().toLowerCase()).filter((t) => t !== ""));
}

/** `pairs` less those whose names are in `named`. */
function without(pairs: HeaderPairs, named: Set<string> | undefined): HeaderPairs {
  return named === undefined ? pairs : pairs.filter(([k]) => !named.has(k));
}

/**
 * Headers as name/value pairs, names in lower case. `fetch` and `Response`
 * take these directly; a `Headers` object given to them is copied through
 * its iterator, which costs several times more.
 */
export type HeaderPairs = [string, string][];

/**
 * What kvgate reads of a client's request headers, gathered in one pass:
 * each `Headers.get` scans and lower-cases the whole list again.
 */
export interface ClientHead {
  /** The headers to forward: those of {@linkcode forwardedUpstream}, less any named in `Connection`. */
  forward: HeaderPairs;
  authorization: string | null;
  /** `x-api-key`. */
  apiKey: string | null;
  /** `x-goog-api-key`. */
  googApiKey: string | null;
  contentLength: string | null;
  /** `x-kvgate-lane: bulk`: the team's bulk lane (any other value: interactive). */
  bulk: boolean;
  /** True when the request carries `Origin` (a browser's): see `corsHeaders()` in cors.ts. */
  origin: boolean;
  /**
   * The `Host` holds a character no host name has (`/ ? # @ \`). Deno builds
   * `req.url` from it, so the path the routes see would move.
   */
  badHost: boolean;
}

const BAD_HOST = /[\/?#@\\]/;

/** Reads a client's request headers once; see {@linkcode ClientHead}. */
export function readClientHead(incoming: Headers): ClientHead {
  const head: ClientHead = {
    forward: [],
    authorization: null,
    apiKey: null,
    googApiKey: null,
    contentLength: null,
    bulk: false,
    origin: false,
    badHost: false,
  };
  let connection: string | null = null;
  // forEach, not for-of: Deno's Headers iterator costs about four times more.
  incoming.forEach((v, k) => {
    if (forwardedUpstream(k)) return void head.forward.push([k, v]);
    if (k === "origin") head.origin = true;
    else if (k === "authorization") head.authorization = v;
    else if (k === "x-api-key") head.apiKey = v;
    else if (k === "x-goog-api-key") head.googApiKey = v;
    else if (k === "content-length") head.contentLength = v;
    else if (k === "connection") connection = v;
    else if (k === "x-kvgate-lane") head.bulk = v.trim().toLowerCase() === "bulk";
    else if (k === "host") head.badHost = BAD_HOST.test(v);
  });
  head.forward = without(head.forward, connectionNamed(connection));
  return head;
}

/**
 * The headers sent upstream (a new list each attempt): the client's
 * forwardable ones, asking for `identity` so the bytes we relay are the
 * bytes the upstream sent and its `content-encoding` stays true.
 */
export function upstreamRequestHeaders(client: ClientHead): HeaderPairs {
  const out = client.forward.slice();
  out.push(["accept-encoding", "identity"]);
  return out;
}

/**
 * The upstream's answer headers relayed to the client: what describes the
 * body, and the limits and timing a client's SDK reads. An allowlist: the
 * rest (`set-cookie` for the gateway's origin, the key owner's
 * `openai-organization`, `openai-project`, `anthropic-organization-id`,
 * `server`, the upstream's CORS and request ids) stays here.
 */
const RELAYED = new Set([
  "content-type",
  "content-length",
  "content-encoding",
  "content-disposition",
  "cache-control",
  "retry-after",
  "retry-after-ms",
  "request-id",
  "openai-processing-ms",
]);

/** True for an upstream answer header relayed to the client (see {@linkcode RELAYED}). */
function relayedToClient(name: string): boolean {
  return RELAYED.has(name) || name.startsWith("x-ratelimit-") ||
    name.startsWith("anthropic-ratelimit-");
}

/** True when an upstream body is encoded (gzip and the like), so its bytes cannot be read as text. */
export function bodyEncoded(headers: Headers): boolean {
  const encoding = headers.get("content-encoding");
  return encoding !== null && encoding !== "identity";
}

/** The head of a relayed answer, read from the upstream's headers in one pass. */
export interface RelayHead {
  headers: HeaderPairs;
  /** The upstream's `content-length`, or null. */
  contentLength: string | null;
  /** True for `text/event-stream`. */
  eventStream: boolean;
}

/**
 * The headers relayed to the client: the upstream's of
 * {@linkcode relayedToClient}, less any named in `Connection`, plus `cors` (kvgate's CORS headers, see
 * `corsHeaders()` in cors.ts), `x-request-id`, and `x-accel-buffering: no` on
 * event streams. Because kvgate always asks for
 * `identity`, fetch never decodes the body, so `content-encoding` and
 * `content-length` still describe the bytes and are kept.
 */
export function relayResponseHeaders(
  upstream: Headers,
  requestId: string,
  cors: readonly (readonly [string, string])[],
): RelayHead {
  const kept: HeaderPairs = [];
  let connection: string | null = null;
  let contentLength: string | null = null;
  let eventStream = false;
  upstream.forEach((v, k) => {
    if (HOP_BY_HOP.has(k)) {
      if (k === "connection") connection = v;
      return;
    }
    if (!relayedToClient(k)) return;
    if (k === "content-length") contentLength = v;
    else if (k === "content-type" && v.includes("text/event-stream")) eventStream = true;
    kept.push([k, v]);
  });
  const named = connectionNamed(connection);
  const out = appendGatewayHeaders(without(kept, named), requestId, cors);
  if (named?.has("content-length")) contentLength = null;
  if (eventStream) out.push(["x-accel-buffering", "no"]);
  return { headers: out, contentLength, eventStream };
}

/**
 * Adds what every answer on a service path carries, relayed or kvgate's
 * own: `cors` (see `corsHeaders()` in cors.ts) and `x-request-id`.
 * Returns `out`.
 */
export function appendGatewayHeaders(
  out: HeaderPairs,
  requestId: string,
  cors: readonly (readonly [string, string])[],
): HeaderPairs {
  // The shared pairs themselves: Response copies them and never changes them.
  for (const pair of cors) out.push(pair as [string, string]);
  out.push(["x-request-id", requestId]);
  return out;
}
