/**
 * The floor for any Deno gateway: a bare pass-through proxy. Forwards the
 * method, headers and body with `fetch` and streams the answer back; no
 * auth, no limits, no logging. Run:
 * `TARGET=http://127.0.0.1:8001 PORT=8002 deno run -A bench/minimal_proxy.ts`.
 *
 * `RELAY=pull`: the answer's body passes through the cheapest pass-through
 * a JavaScript relay can be — a pull stream that reads one chunk when the
 * client wants one and enqueues it as it is — the floor for any relay that
 * looks at the chunks (kvgate's observed relay is measured against it).
 *
 * `BODY=whole`: the request's body is read whole before it is sent, as any
 * proxy that may send a request again (on another key) must: the floor for
 * a retrying gateway (kvgate is measured against it too).
 *
 * @module
 */
import { passThrough } from "./pass_through.ts";

const target = Deno.env.get("TARGET") ?? "http://127.0.0.1:8001";
const port = Number(Deno.env.get("PORT") ?? 8002);
const pull = Deno.env.get("RELAY") === "pull";
const whole = Deno.env.get("BODY") === "whole";

Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
  const url = new URL(req.url);
  const headers = new Headers(req.headers);
  headers.delete("host");
  const upstream = await fetch(target + url.pathname + url.search, {
    method: req.method,
    headers,
    body: whole ? await req.bytes() : req.body,
    redirect: "manual",
    signal: req.signal,
  });
  const body = pull && upstream.body ? passThrough(upstream.body) : upstream.body;
  return new Response(body, { status: upstream.status, headers: upstream.headers });
});
