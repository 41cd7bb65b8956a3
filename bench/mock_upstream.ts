/**
 * The upstream of the load benchmark, run as its own process: answers chat
 * completions after a fixed latency, as JSON or as an SSE stream, and
 * counts what it served. Run:
 * `PORT=8001 LATENCY_MS=2 deno run -A bench/mock_upstream.ts`.
 *
 * `GET /stats` answers `{received, inFlight}` (requests seen, and still open).
 *
 * @module
 */
const port = Number(Deno.env.get("PORT") ?? 8001);
const latencyMs = Number(Deno.env.get("LATENCY_MS") ?? 2);
const chunks = Number(Deno.env.get("CHUNKS") ?? 10);
const chunkDelayMs = Number(Deno.env.get("CHUNK_DELAY_MS") ?? 2);

const completion = JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion",
  created: 1_700_000_000,
  model: "bench-model",
  choices: [{
    index: 0,
    message: {
      role: "assistant",
      content: "The quick brown fox jumps over the lazy dog. ".repeat(4),
    },
    finish_reason: "stop",
  }],
  usage: { prompt_tokens: 12, completion_tokens: 40, total_tokens: 52 },
});
const encoder = new TextEncoder();
const chunk = (i: number) =>
  encoder.encode(
    `data: ${
      JSON.stringify({
        id: "chatcmpl-bench",
        object: "chat.completion.chunk",
        choices: [{ index: 0, delta: { content: `token ${i} ` } }],
      })
    }\n\n`,
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let received = 0;
let inFlight = 0;

Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
  const url = new URL(req.url);
  if (url.pathname === "/stats") return Response.json({ received, inFlight });
  if (req.method !== "POST") return new Response("ok");
  received++;
  inFlight++;
  const body = await req.json().catch(() => ({}));
  await sleep(latencyMs);
  if (!body.stream) {
    inFlight--;
    return new Response(completion, { headers: { "content-type": "application/json" } });
  }
  // A request may ask for its own length and pace (the stream phases of the bench).
  const n = Number.isInteger(body.bench_chunks) ? body.bench_chunks : chunks;
  const delay = Number.isFinite(body.bench_chunk_delay_ms)
    ? body.bench_chunk_delay_ms
    : chunkDelayMs;
  let i = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i > 0 && delay > 0) await sleep(delay);
      if (i < n) {
        controller.enqueue(chunk(i++));
      } else {
        controller.enqueue(encoder.encode("data: [DONE]\n\n"));
        controller.close();
        inFlight--;
      }
    },
    cancel() {
      inFlight--;
    },
  });
  return new Response(stream, { headers: { "content-type": "text/event-stream" } });
});
