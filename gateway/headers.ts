import { CREDENTIAL_HEADERS } from "./auth.ts";

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
 * The headers sent upstream: the client's, less hop-by-hop and credential
 * headers, asking for `identity` so the bytes we relay are the bytes the
 * upstream sent and its `content-encoding` stays true.
 */
export function upstreamRequestHeaders(incoming: Headers): Headers {
  const named = connectionTokens(incoming);
  const out = new Headers();
  // forEach, not for-of: Deno's Headers iterator costs about four times more.
  incoming.forEach((v, k) => {
    if (!NOT_FORWARDED.has(k) && !named?.has(k)) out.append(k, v);
  });
  out.set("accept-encoding", "identity");
  return out;
}

/**
 * The headers relayed to the client: the upstream's, less hop-by-hop ones
 * and its own CORS headers (the gateway sets those). Because kvgate always
 * asks for `identity`, fetch never decodes the body, so `content-encoding`
 * and `content-length` still describe the bytes and are kept.
 */
export function relayResponseHeaders(upstream: Headers): Headers {
  const named = connectionTokens(upstream);
  const out = new Headers();
  upstream.forEach((v, k) => {
    if (!HOP_BY_HOP.has(k) && !named?.has(k) && !k.startsWith("access-control-")) out.append(k, v);
  });
  return out;
}
