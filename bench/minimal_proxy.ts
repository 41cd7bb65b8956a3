/**
 * The floor for any Deno gateway: a bare pass-through proxy. Forwards the
 * method, headers and body with `fetch` and streams the answer back; no
 * auth, no limits, no logging. Run:
 * `TARGET=http://127.0.0.1:8001 PORT=8002 deno run -A bench/minimal_proxy.ts`.
 *
 * @module
 */
const target = Deno.env.get("TARGET") ?? "http://127.0.0.1:8001";
const port = Number(Deno.env.get("PORT") ?? 8002);

Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
  const url = new URL(req.url);
  const headers = new Headers(req.headers);
  headers.delete("host");
  const upstream = await fetch(target + url.pathname + url.search, {
    method: req.method,
    headers,
    body: req.body,
    redirect: "manual",
    signal: req.signal,
  });
  return new Response(upstream.body, { status: upstream.status, headers: upstream.headers });
});
