import type { Service, ServiceStyle } from "../../config/mod.ts";

/** The path and query of a request, as the client sent them (not normalized). */
export interface RequestTarget {
  /** From the first `/` up to `?` (or the end), raw: `..` and `%2e` are still there. */
  path: string;
  /** `?` and the query, or "". */
  search: string;
}

/**
 * Splits `req.url` into its raw path and query without parsing a URL: the
 * request line's target is already a path, and a `URL` would normalize it
 * (resolving `..`), which the route must see to refuse. Cheaper, too: this
 * runs on every request.
 */
export function requestTarget(url: string): RequestTarget {
  const scheme = url.indexOf("://");
  let start = scheme === -1 ? 0 : scheme + 3;
  // The authority ends at the first "/", "?" or "#".
  for (let c = url.charCodeAt(start); start < url.length; c = url.charCodeAt(++start)) {
    if (c === 0x2f || c === 0x3f || c === 0x23) break;
  }
  const hash = url.indexOf("#", start);
  const end = hash === -1 ? url.length : hash;
  let query = url.indexOf("?", start);
  if (query === -1 || query > end) query = end;
  return {
    path: start === query ? "/" : url.slice(start, query),
    search: url.slice(query, end),
  };
}

/** Where a service request goes upstream. */
export interface Route {
  service: Service;
  /** The absolute upstream URL, always on the service's target origin. */
  upstream: string;
  /** True on gemini's native paths (`/v1beta/...`), which take `x-goog-api-key`. */
  geminiNative: boolean;
}

/** A route failure: no such service, or a path that tries to leave the target. */
export type RouteResult = Route | { error: "no_service" } | { error: "bad_path"; message: string };

/** The first path segment: the service name. */
export function serviceName(pathname: string): string {
  const end = pathname.indexOf("/", 1);
  return end === -1 ? pathname.slice(1) : pathname.slice(1, end);
}

// A segment whose decoded form could move up or across the target's path.
function unsafeSegment(segment: string): boolean {
  if (segment.indexOf("%") === -1) {
    return segment === "." || segment === ".." || segment.includes("\\");
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    return true;
  }
  return decoded === "." || decoded === ".." || /[\/\\]/.test(decoded) || segment.includes("\\");
}

// Anything but visible ASCII: the request line cannot carry it legitimately.
const NOT_VISIBLE_ASCII = /[^\x21-\x7e]/;

function unsafePath(rest: string): boolean {
  if (rest.includes("//") || NOT_VISIBLE_ASCII.test(rest)) return true;
  let from = 1;
  while (from <= rest.length) {
    let to = rest.indexOf("/", from);
    if (to === -1) to = rest.length;
    if (to > from && unsafeSegment(rest.slice(from, to))) return true;
    from = to + 1;
  }
  return false;
}

const BAD_PATH = { error: "bad_path", message: "The request path is not allowed." } as const;

/**
 * Maps `/<service>/rest?query` to `<target>/rest?query`, exactly on the first
 * segment. Any path that could reach another origin or climb above the
 * target's path (`..`, `%2e%2e`, `//host`, backslashes, encoded slashes,
 * anything but visible ASCII) is refused; what is left can only name a path
 * under the target's, so the upstream URL is built as a string (`fetch`
 * parses it once). `dropParams` are removed from the query (gemini's `?key=`).
 */
export function route(
  target: RequestTarget,
  services: Readonly<Record<string, Service>>,
  dropParams: readonly string[] = [],
): RouteResult {
  const name = serviceName(target.path);
  const service = Object.hasOwn(services, name) ? services[name] : undefined;
  if (!service) return { error: "no_service" };
  // "" or "/...": the service name is a whole segment.
  let rest = target.path.slice(name.length + 1);
  if (unsafePath(rest)) return BAD_PATH;
  let geminiNative = false;
  if (service.style === "gemini") {
    if (rest === "/v1" || rest.startsWith("/v1/")) rest = "/v1beta/openai" + rest.slice(3);
    else geminiNative = true;
  }
  let search = target.search;
  if (NOT_VISIBLE_ASCII.test(search)) return BAD_PATH;
  if (dropParams.length > 0 && search) {
    const params = new URLSearchParams(search);
    for (const p of dropParams) params.delete(p);
    const s = params.toString();
    search = s ? `?${s}` : "";
  }
  // The target carries no query, fragment or trailing slash (config/load.ts).
  return { service, upstream: service.target + rest + search, geminiNative };
}

/** Longest path whose route is remembered: a client's long paths must not fill memory. */
const MAX_CACHED_PATH = 256;

/** Routes remembered at most (see {@linkcode RouteCache}). */
const ROUTE_CACHE_SIZE = 1024;

/**
 * The route stage's memory: clients send the same few paths again and
 * again, so their routes are kept (at most 1024, then all forgotten). Only
 * paths without a query, so that no gemini `?key=` secret is kept as a key.
 */
export class RouteCache {
  #routes = new Map<string, Route>();
  #services: Readonly<Record<string, Service>>;

  constructor(services: Readonly<Record<string, Service>>) {
    this.#services = services;
  }

  /** The route of `target` (see {@linkcode route}); gemini drops `?key=`. */
  route(target: RequestTarget, style: ServiceStyle): RouteResult {
    const cached = target.search === "" ? this.#routes.get(target.path) : undefined;
    if (cached) return cached;
    const r = route(target, this.#services, style === "gemini" ? ["key"] : []);
    if (target.search === "" && !("error" in r) && target.path.length <= MAX_CACHED_PATH) {
      if (this.#routes.size >= ROUTE_CACHE_SIZE) this.#routes.clear();
      this.#routes.set(target.path, r);
    }
    return r;
  }
}
