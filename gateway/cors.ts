const ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
/**
 * Every request header a browser may send: `*` covers all but
 * `authorization`, which must be named. Nothing is reflected from the
 * request; what goes upstream is decided by the allowlist in headers.ts.
 */
const ALLOW_HEADERS = "authorization, *";
const EXPOSE = "x-request-id, retry-after, retry-after-ms, x-ratelimit-remaining-requests, " +
  "x-ratelimit-reset-requests, anthropic-ratelimit-requests-remaining";

/** A header as a name/value pair. */
type Pair = readonly [string, string];

/** The CORS headers of an API response to a browser (a request with `Origin`). */
export const CORS_HEADERS: readonly Pair[] = [
  ["access-control-allow-origin", "*"],
  ["access-control-expose-headers", EXPOSE],
];

const VARY_ORIGIN: readonly Pair[] = [["vary", "origin"]];
const NONE: readonly Pair[] = [];

/**
 * The CORS headers an API response carries. Only a request with `Origin`
 * gets them: every browser sends it on a cross-origin request, and for SDKs
 * and servers they are dead weight (validating and writing them costs about
 * as much as the rest of a response head). Since the answer then depends on
 * `Origin`, a cacheable one (GET, HEAD) says so with `Vary: Origin`.
 */
export function corsHeaders(origin: boolean, method: string): readonly Pair[] {
  if (origin) return CORS_HEADERS;
  return method === "GET" || method === "HEAD" ? VARY_ORIGIN : NONE;
}

/** Adds `pairs` (see {@linkcode corsHeaders}) to `headers`. */
export function applyCors(headers: Headers, pairs: readonly Pair[]): Headers {
  for (const [k, v] of pairs) headers.set(k, v);
  return headers;
}

/**
 * The answer to a browser's OPTIONS preflight on a service path. Browsers
 * send preflights without credentials, so it must answer strangers too (a
 * web client could not call kvgate otherwise): the same fixed headers for
 * every path, echoing nothing of the request.
 */
export function preflight(_req: Request): Response {
  const headers = applyCors(new Headers(), CORS_HEADERS);
  headers.set("access-control-allow-methods", ALLOW_METHODS);
  headers.set("access-control-allow-headers", ALLOW_HEADERS);
  headers.set("access-control-max-age", "86400");
  return new Response(null, { status: 204, headers });
}
