import { CREDENTIAL_HEADERS } from "./auth.ts";
import { CORS_HEADERS } from "./cors.ts";

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
]);

function connectionTokens(headers: Headers): Set<string> | undefined {
  const c = headers.get("connection");
  if (c === null) return undefined;
  return new Set(c.split(",").map((t) => t.trim().toLowerCase()).filter((t) => t !== ""));
}

/**
 * Headers as name/value pairs, names in lower case. `fetch` and `Response`
 * take these directly; a `Headers` object given to them is copied through
 * its iterator, which costs several times more.
 */
export type HeaderPairs = [string, string][];

/**
 * The headers sent upstream: the client's, less hop-by-hop and credential
 * headers, asking for `identity` so the bytes we relay are the bytes the
 * upstream sent and its `content-encoding` stays true.
 */
export function upstreamRequestHeaders(incoming: Headers): HeaderPairs {
  const named = connectionTokens(incoming);
  const out: HeaderPairs = [];
  // forEach, not for-of: Deno's Headers iterator costs about four times more.
  incoming.forEach((v, k) => {
    if (!NOT_FORWARDED.has(k) && !named?.has(k)) out.push([k, v]);
  });
  out.push(["accept-encoding", "identity"]);
  return out;
}

// Set by kvgate on every relayed answer.
const REPLACED = new Set(["x-request-id", "x-accel-buffering"]);

/**
 * The headers relayed to the client: the upstream's, less hop-by-hop ones
 * and its own CORS headers, plus kvgate's CORS headers, `x-request-id`, and
 * `x-accel-buffering: no` on event streams. Because kvgate always asks for
 * `identity`, fetch never decodes the body, so `content-encoding` and
 * `content-length` still describe the bytes and are kept.
 */
export function relayResponseHeaders(upstream: Headers, requestId: string): HeaderPairs {
  const named = connectionTokens(upstream);
  const out: HeaderPairs = [];
  let eventStream = false;
  upstream.forEach((v, k) => {
    if (HOP_BY_HOP.has(k) || named?.has(k) || REPLACED.has(k) || k.startsWith("access-control-")) {
      return;
    }
    if (k === "content-type" && v.includes("text/event-stream")) eventStream = true;
    out.push([k, v]);
  });
  for (const [k, v] of CORS_HEADERS) out.push([k, v]);
  out.push(["x-request-id", requestId]);
  if (eventStream) out.push(["x-accel-buffering", "no"]);
  return out;
}
