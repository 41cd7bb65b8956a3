/**
 * The probe of a suspect key: one `GET …/models` to the service's target
 * with the key where the provider wants it and nothing else — no header,
 * path or body of any client — so that its answer speaks of the key alone.
 *
 * @module
 */
import type { Service } from "../config/mod.ts";
import { type PooledKey } from "../keys/mod.ts";
import { classifyResponse, type Outcome } from "../providers/mod.ts";
import { setUpstreamAuth } from "./stages/auth.ts";
import type { HeaderPairs } from "./headers.ts";
import type { Clock } from "../lib/mod.ts";

/** How long a probe may take before it tells nothing, in ms. */
const PROBE_TIMEOUT_MS = 10_000;

/** The path that lists models in each style: every provider answers it for any valid key. */
function modelsPath(service: Service): string {
  if (service.style === "gemini") return "/v1beta/models?pageSize=1";
  return service.style === "anthropic" ? "/v1/models?limit=1" : "/v1/models";
}

/**
 * Builds the probe of `service`'s keys: what the provider's answer to
 * `GET <target>/models` means for the key (undefined: no answer in time).
 */
export function keyProber(
  service: Service,
  fetchFn: typeof fetch,
  clock: Clock,
): (key: PooledKey) => Promise<Outcome | undefined> {
  const url = service.target + modelsPath(service);
  return async (key) => {
    const headers: HeaderPairs = [["accept", "application/json"], ["accept-encoding", "identity"]];
    setUpstreamAuth(headers, service.style, key.secret, service.style === "gemini");
    const gaveUp = new AbortController();
    const timer = clock.setTimeout(() => gaveUp.abort(), PROBE_TIMEOUT_MS);
    try {
      const res = await fetchFn(url, { headers, redirect: "manual", signal: gaveUp.signal });
      const body = res.status >= 400 ? (await res.text()).slice(0, 64 * 1024) : "";
      if (res.status < 400) await res.body?.cancel();
      const now = clock.now();
      return classifyResponse(res.status, res.headers, body, now, service.rateLimitHeaders);
    } catch {
      return undefined;
    } finally {
      clock.clearTimeout(timer);
    }
  };
}
