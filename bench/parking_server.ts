/**
 * The memory floor for a held request: a Deno server that answers nothing
 * until the client goes away. Run: `PORT=8004 deno run -A bench/parking_server.ts`.
 *
 * @module
 */
const port = Number(Deno.env.get("PORT") ?? 8004);

Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
  if (req.method !== "POST") return new Response("ok");
  await req.arrayBuffer();
  return await new Promise<Response>((resolve) =>
    req.signal.addEventListener("abort", () => resolve(new Response(null)), { once: true })
  );
});
