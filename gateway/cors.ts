const ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const DEFAULT_ALLOW_HEADERS =
  "authorization, content-type, x-api-key, x-goog-api-key, anthropic-version, anthropic-beta, " +
  "anthropic-dangerous-direct-browser-access, openai-organization, openai-project, x-stainless-*";
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

/** The answer to a browser's OPTIONS preflight on a service path. */
export function preflight(req: Request, requestId: string): Response {
  const headers = applyCors(new Headers({ "x-request-id": requestId }), CORS_HEADERS);
  headers.set("access-control-allow-methods", ALLOW_METHODS);
  headers.set(
    "access-control-allow-headers",
    req.headers.get("access-control-request-headers") ?? DEFAULT_ALLOW_HEADERS,
  );
  headers.set("access-control-max-age", "86400");
  return new Response(null, { status: 204, headers });
}
