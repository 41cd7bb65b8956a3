/** Headers that carry client credentials (see auth.ts); never forwarded upstream. */
export const CREDENTIAL_HEADERS: readonly string[] = [
  "authorization",
  "x-api-key",
  "x-goog-api-key",
];

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

// Set by fetch from the body, the URL or ourselves.
const NOT_FORWARDED = new Set([
  ...HOP_BY_HOP,
  ...CREDENTIAL_HEADERS,
  "host",
  "content-length",
  "accept-encoding",
  // kvgate's own: which lane of its team a request takes.
  "x-kvgate-lane",
]);

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
  /** The headers to forward: less hop-by-hop, credential, host, length and accept-encoding. */
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
}

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
  };
  let connection: string | null = null;
  // forEach, not for-of: Deno's Headers iterator costs about four times more.
  incoming.forEach((v, k) => {
    if (k === "origin") head.origin = true;
    if (!NOT_FORWARDED.has(k)) return void head.forward.push([k, v]);
    if (k === "authorization") head.authorization = v;
    else if (k === "x-api-key") head.apiKey = v;
    else if (k === "x-goog-api-key") head.googApiKey = v;
    else if (k === "content-length") head.contentLength = v;
    else if (k === "connection") connection = v;
    else if (k === "x-kvgate-lane") head.bulk = v.trim().toLowerCase() === "bulk";
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

// Set by kvgate on every relayed answer.
const REPLACED = new Set(["x-request-id", "x-accel-buffering"]);

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
 * The headers relayed to the client: the upstream's, less hop-by-hop ones
 * and its own CORS headers, plus `cors` (kvgate's CORS headers, see
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
    if (REPLACED.has(k) || k.startsWith("access-control-")) return;
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
