import type { PooledKey } from "../../keys/mod.ts";
import { setUpstreamAuth } from "./auth.ts";
import type { Bytes } from "./body.ts";
import type { Exchange } from "../exchange.ts";
import { upstreamRequestHeaders } from "../headers.ts";
import type { StageDeps } from "../stage_deps.ts";
import type { Route } from "./route.ts";

/** Why an attempt brought no response. */
export type NoResponse = "timeout" | "network" | "aborted";

/**
 * Calls the upstream once with `key`: the client's headers less its
 * credentials, the provider key where the provider wants it, the body read
 * before. One controller stops it for both reasons there are: the client
 * leaving (at any time, the body included) and no headers within
 * `firstByteTimeoutMs`.
 */
export async function callUpstream(
  p: StageDeps,
  x: Exchange,
  r: Route,
  key: PooledKey,
  body: Bytes | undefined,
): Promise<Response | NoResponse> {
  const sent = x.now;
  const headers = upstreamRequestHeaders(x.head);
  setUpstreamAuth(headers, x.style, key.secret, r.geminiNative);
  const upstream = new AbortController();
  if (x.req.signal.aborted) return "aborted";
  x.req.signal.addEventListener("abort", () => upstream.abort());
  let timedOut = false;
  const cancelTimeout = p.firstByteTimeouts.at(sent + p.config.firstByteTimeoutMs, () => {
    timedOut = true;
    upstream.abort();
  });
  try {
    const res = await p.fetch(r.upstream, {
      method: x.req.method,
      headers,
      body,
      redirect: "manual",
      signal: upstream.signal,
    });
    x.now = p.clock.now();
    x.upstreamMs = x.now - sent;
    return res;
  } catch {
    if (x.req.signal.aborted) return "aborted";
    return timedOut ? "timeout" : "network";
  } finally {
    cancelTimeout();
  }
}
