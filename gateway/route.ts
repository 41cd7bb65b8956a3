import type { Service } from "../config/mod.ts";

/** Where a service request goes upstream. */
export interface Route {
  service: Service;
  /** The absolute upstream URL, always on the service's target origin. */
  upstream: URL;
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
  let decoded: string;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    return true;
  }
  return decoded === "." || decoded === ".." || /[\/\\]/.test(decoded) || segment.includes("\\");
}

const targets = new WeakMap<Service, { origin: string; base: string }>();

/** A service target's origin and path without trailing slashes, parsed once per service. */
function parsedTarget(service: Service): { origin: string; base: string } {
  let t = targets.get(service);
  if (!t) {
    const url = new URL(service.target);
    t = { origin: url.origin, base: url.pathname.replace(/\/+$/, "") };
    targets.set(service, t);
  }
  return t;
}

/**
 * Maps `/<service>/rest?query` to `<target>/rest?query`, exactly on the first
 * segment. Any path that could reach another origin or climb above the
 * target's path (`..`, `%2e%2e`, `//host`, backslashes, encoded slashes)
 * is refused. `dropParams` are removed from the query (gemini's `?key=`).
 */
export function route(
  url: URL,
  services: Readonly<Record<string, Service>>,
  dropParams: readonly string[] = [],
): RouteResult {
  const name = serviceName(url.pathname);
  const service = Object.hasOwn(services, name) ? services[name] : undefined;
  if (!service) return { error: "no_service" };
  let rest = url.pathname.slice(name.length + 1);
  if (rest.includes("//") || rest.split("/").some((s) => s !== "" && unsafeSegment(s))) {
    return { error: "bad_path", message: "The request path is not allowed." };
  }
  let geminiNative = false;
  if (service.style === "gemini") {
    if (rest === "/v1" || rest.startsWith("/v1/")) rest = "/v1beta/openai" + rest.slice(3);
    else geminiNative = true;
  }
  let search = url.search;
  if (dropParams.length > 0 && search) {
    const params = new URLSearchParams(search);
    for (const p of dropParams) params.delete(p);
    const s = params.toString();
    search = s ? `?${s}` : "";
  }
  const { origin, base } = parsedTarget(service);
  const upstream = new URL(service.target + rest + search);
  if (
    upstream.origin !== origin ||
    (upstream.pathname !== base && !upstream.pathname.startsWith(base + "/"))
  ) {
    return { error: "bad_path", message: "The request path is not allowed." };
  }
  return { service, upstream, geminiNative };
}
