const ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const DEFAULT_ALLOW_HEADERS =
  "authorization, content-type, x-api-key, x-goog-api-key, anthropic-version, anthropic-beta, " +
  "anthropic-dangerous-direct-browser-access, openai-organization, openai-project, x-stainless-*";
const EXPOSE = "x-request-id, retry-after, retry-after-ms, x-ratelimit-remaining-requests, " +
  "x-ratelimit-reset-requests, anthropic-ratelimit-requests-remaining";

/** The CORS headers every API response carries. */
export const CORS_HEADERS: readonly (readonly [string, string])[] = [
  ["access-control-allow-origin", "*"],
  ["access-control-expose-headers", EXPOSE],
];

/** Adds the CORS headers every API response carries. */
export function applyCors(headers: Headers): Headers {
  for (const [k, v] of CORS_HEADERS) headers.set(k, v);
  return headers;
}

/** The answer to a browser's OPTIONS preflight on a service path. */
export function preflight(req: Request, requestId: string): Response {
  const headers = applyCors(new Headers({ "x-request-id": requestId }));
  headers.set("access-control-allow-methods", ALLOW_METHODS);
  headers.set(
    "access-control-allow-headers",
    req.headers.get("access-control-request-headers") ?? DEFAULT_ALLOW_HEADERS,
  );
  headers.set("access-control-max-age", "86400");
  return new Response(null, { status: 204, headers });
}
