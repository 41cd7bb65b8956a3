/**
 * What the benchmark scripts share: the gateway password and environment
 * they start kvgate with, the wrk script of the chat load, waiting for a
 * server to listen, and how to run bench/queue_memory.ts.
 *
 * @module
 */

/** The gateway password every benchmark uses. */
export const BENCH_PASSWORD = "bench-password-0123456789";

/** The environment of a kvgate process whose one service, `openai`, goes to `mockBase`. */
export function kvgateEnv(
  mockBase: string,
  kvPath: string,
  limits: Record<string, number | string>,
): Record<string, string> {
  return {
    ACCESS_PASSWORD: BENCH_PASSWORD,
    KV_PATH: kvPath,
    OPENAI_API_KEYS: "sk-bench-one,sk-bench-two",
    GATEWAY_CONFIG: JSON.stringify({
      queueLimit: 20_000,
      queueTimeoutMs: 600_000,
      services: { openai: { target: mockBase, ...limits } },
    }),
  };
}

/** The wrk (Lua) script of the load: a small non-streaming chat completion. */
export const CHAT_LUA = `wrk.method = "POST"
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"Translate: hello"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer ${BENCH_PASSWORD}"
`;

/**
 * The wrk (Lua) script of a streamed chat completion of `chunks` SSE events,
 * `delayMs` apart (0: back to back; bench/mock_upstream.ts reads
 * `bench_chunks` and `bench_chunk_delay_ms`), plus its finish and `[DONE]`.
 */
export function streamLua(chunks: number, delayMs = 0): string {
  const body = JSON.stringify({
    model: "bench-model",
    stream: true,
    bench_chunks: chunks,
    bench_chunk_delay_ms: delayMs,
    messages: [{ role: "user", content: "Translate: hello" }],
  });
  return `wrk.method = "POST"
wrk.body = '${body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer ${BENCH_PASSWORD}"
`;
}

/** Resolves once `GET <base>/` answers (15 s at most); `name` goes into the error. */
export async function waitListening(base: string, name: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      await (await fetch(`${base}/`, { signal: AbortSignal.timeout(2000) })).body?.cancel();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`${name} did not start`);
}

/** `deno` arguments that run bench/queue_memory.ts with `n` requests; `flags` go before the script. */
export function queueMemoryArgs(n: number | string, flags: string[] = []): string[] {
  return [
    "run",
    "-A",
    "--unstable-kv",
    "--unstable-no-legacy-abort",
    "--v8-flags=--expose-gc",
    ...flags,
    new URL("./queue_memory.ts", import.meta.url).pathname,
    String(n),
  ];
}
