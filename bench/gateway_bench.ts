/**
 * Micro-benchmarks (issue 4), run by `deno task bench`:
 *
 * - the limiter's fast path: take a token and release a slot from the local stock;
 * - the key picker;
 * - the whole request pipeline in one process, with fetch replaced by a
 *   canned answer, next to a bare pass-through handler doing the same work
 *   with no gateway (the in-process floor): what kvgate's own stages cost.
 *
 * @module
 */
import { loadConfig } from "../config/mod.ts";
import { createGateway } from "../gateway/mod.ts";
import { KeyHealthStore, KeyPool } from "../keys/mod.ts";
import { KvCapacityStore, MemoryCapacityStore, ScopeLimiter, systemClock } from "../limiter/mod.ts";

// ---- limiter fast path ----

const fast = { rps: 1e9, burst: 1e9, maxConn: 1e6 };
const limiter = new ScopeLimiter(fast, {
  store: new MemoryCapacityStore(fast, systemClock),
  clock: systemClock,
});
const forever = { deadline: Date.now() + 3_600_000 };
// Fill the local stock once; every later take is served from it.
await limiter.takeToken(forever);

Deno.bench(
  "limiter fast path: acquireSlot + takeToken + release",
  { group: "limiter" },
  async () => {
    const slot = await limiter.acquireSlot(forever);
    await limiter.takeToken(forever);
    if (slot.ok) slot.release();
  },
);

Deno.bench(
  "limiter fast path, no promise (what the gateway calls): trySlot + tryToken + release",
  { group: "limiter" },
  () => {
    const slot = limiter.trySlot();
    limiter.tryToken();
    if (slot?.ok) slot.release();
  },
);

// The same with the store shared through KV: requests spend a stock leased in batches.
const sharedKv = await Deno.openKv(":memory:");
const sharedLimiter = new ScopeLimiter(fast, {
  store: new KvCapacityStore(sharedKv, "bench", fast, { instanceId: "bench", clock: systemClock }),
  clock: systemClock,
});
{
  const first = await sharedLimiter.acquireSlot(forever);
  await sharedLimiter.takeToken(forever);
  if (first.ok) first.release();
}

Deno.bench("limiter fast path, KV store (leased stock): acquireSlot + takeToken + release", {
  group: "limiter",
}, async () => {
  const slot = await sharedLimiter.acquireSlot(forever);
  await sharedLimiter.takeToken(forever);
  if (slot.ok) slot.release();
});

// ---- key picker ----

const kv = await Deno.openKv(":memory:");
const pool = new KeyPool(
  "bench",
  Array.from({ length: 8 }, (_, i) => ({ id: `k_${i}`, secret: `sk-${i}` })),
  { store: new KeyHealthStore(kv) },
);
const none = new Set<string>();
Deno.bench("key picker: pick() among 8 healthy keys", { group: "keys" }, () => {
  pool.pick(Date.now(), none);
});

// ---- whole pipeline, in process ----

const completion = JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion",
  choices: [{ index: 0, message: { role: "assistant", content: "hello ".repeat(40) } }],
});
const cannedFetch = (_input: RequestInfo | URL, init?: RequestInit) => {
  // Consume what a real fetch would read.
  void init?.headers;
  return Promise.resolve(
    new Response(completion, {
      headers: {
        "content-type": "application/json",
        "content-length": String(completion.length),
      },
    }),
  );
};
const env: Record<string, string> = {
  ACCESS_PASSWORD: "bench-password-0123456789",
  OPENAI_API_KEYS: "sk-bench-one,sk-bench-two",
  GATEWAY_CONFIG: JSON.stringify({
    limitMode: "local",
    services: { openai: { target: "http://upstream.invalid", rps: 1e9, burst: 1e9, maxConn: 1e6 } },
  }),
};
const gateway = await createGateway(loadConfig((n) => env[n]), {
  kv,
  fetch: cannedFetch as typeof fetch,
  log: () => {},
});
const body = JSON.stringify({
  model: "m",
  messages: [{ role: "user", content: "Translate: hello" }],
});
const request = (url: string) =>
  new Request(url, {
    method: "POST",
    headers: {
      authorization: "Bearer bench-password-0123456789",
      "content-type": "application/json",
      "content-length": String(body.length),
    },
    body,
  });

/** The in-process floor: forward headers and body, copy the answer back. */
async function bare(req: Request): Promise<Response> {
  const url = new URL(req.url);
  const headers = new Headers(req.headers);
  headers.delete("host");
  const res = await cannedFetch("http://upstream.invalid" + url.pathname, {
    method: req.method,
    headers,
    body: req.body,
  });
  return new Response(res.body, { status: res.status, headers: res.headers });
}

Deno.bench(
  "pipeline: bare pass-through handler",
  { group: "pipeline", baseline: true },
  async () => {
    const res = await bare(request("http://gw.local/v1/chat/completions"));
    await res.arrayBuffer();
  },
);

Deno.bench(
  "pipeline: kvgate handler (limits not binding, log off)",
  { group: "pipeline" },
  async () => {
    const res = await gateway.handler(request("http://gw.local/openai/v1/chat/completions"));
    await res.arrayBuffer();
  },
);

globalThis.addEventListener("unload", () => {
  sharedLimiter.close();
  gateway.close();
  kv.close();
  sharedKv.close();
});
