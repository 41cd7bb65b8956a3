/**
 * Memory of requests queued in kvgate itself, without sockets (issue 4):
 * N requests go straight to the gateway's handler behind a binding limit
 * (maxConn 1, rps 1), then every one is aborted, twice. Prints JSON: heap
 * bytes per queued request (and, as the floor, per request merely held by a
 * handler that waits for the client to leave), heap after the aborts
 * against before (after a warm-up round of 100), and the timers and
 * waiters left. Run: `deno run -A --unstable-kv --unstable-no-legacy-abort
 * --v8-flags=--expose-gc bench/queue_memory.ts [N]`.
 *
 * @module
 */
import { loadConfig } from "../config/mod.ts";
import { createGateway } from "../gateway/mod.ts";
import { type Clock, systemClock, type TimerHandle } from "../limiter/mod.ts";

const N = Number(Deno.args[0] ?? 10_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");

/** The real clock, counting timers set and not yet fired or cleared. */
const live = new Set<TimerHandle>();
const countingClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const h: TimerHandle = systemClock.setTimeout(() => {
      live.delete(h);
      fn();
    }, ms);
    live.add(h);
    return h;
  },
  clearTimeout(h) {
    live.delete(h);
    systemClock.clearTimeout(h);
  },
};

let upstreamCalls = 0;
const slowFetch = (_: RequestInfo | URL, init?: RequestInit) => {
  upstreamCalls++;
  // Never answers until aborted: the one admitted request holds the only slot.
  return new Promise<Response>((_resolve, reject) =>
    init?.signal?.addEventListener("abort", () => reject(new Error("aborted")), { once: true })
  );
};

const env: Record<string, string> = {
  ACCESS_PASSWORD: "bench-password-0123456789",
  OPENAI_API_KEYS: "sk-bench",
  GATEWAY_CONFIG: JSON.stringify({
    queueLimit: N + 10,
    queueTimeoutMs: 600_000,
    services: { openai: { target: "http://upstream.invalid", rps: 1, burst: 1, maxConn: 1 } },
  }),
};
const kv = await Deno.openKv(":memory:");
const gateway = await createGateway(loadConfig((n) => env[n]), {
  kv,
  fetch: slowFetch as typeof fetch,
  clock: countingClock,
  log: () => {},
});
const limiter = gateway.runtimes.get("openai")!.limiter;
const body = '{"model":"m","messages":[]}';
const settle = async () => {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 50));
    gc();
  }
};

type Handler = (req: Request) => Promise<Response>;

/** The floor: a handler that reads the body and holds the request until the client leaves. */
const park: Handler = async (req) => {
  await req.arrayBuffer();
  return await new Promise<Response>((resolve) =>
    req.signal.addEventListener("abort", () => resolve(new Response(null)), { once: true })
  );
};

let handler: Handler = park;
const send = (signal: AbortSignal) =>
  handler(
    new Request("http://gw.local/openai/v1/chat/completions", {
      method: "POST",
      headers: {
        authorization: "Bearer bench-password-0123456789",
        "content-type": "application/json",
      },
      body,
      signal,
    }),
  ).then((r) => r.body?.cancel(), () => {});

/** Heap bytes per request held by `h`, N at once. */
async function heldBytes(): Promise<number> {
  const before = Deno.memoryUsage().heapUsed;
  const controllers = Array.from({ length: N }, () => new AbortController());
  const pending = controllers.map((c) => send(c.signal));
  await settle();
  const held = Deno.memoryUsage().heapUsed;
  for (const c of controllers) c.abort();
  await Promise.all(pending);
  await settle();
  return (held - before) / N;
}

await heldBytes(); // warm-up
const floorBytes = await heldBytes();

// kvgate: fill the one slot, warm the queue path with a small round, then measure.
handler = gateway.handler;
const first = new AbortController();
const firstDone = send(first.signal);
await settle();
{
  const warm = Array.from({ length: 100 }, () => new AbortController());
  const p = warm.map((c) => send(c.signal));
  await settle();
  warm.forEach((c) => c.abort());
  await Promise.all(p);
  await settle();
}
const timersBefore = live.size;
const heapBefore = Deno.memoryUsage().heapUsed;

/** One round: N queued, then all aborted; heap figures of the round. */
async function round() {
  const controllers = Array.from({ length: N }, () => new AbortController());
  const pending = controllers.map((c) => send(c.signal));
  await settle();
  const queued = limiter.waiting;
  const heapQueued = Deno.memoryUsage().heapUsed;
  const timersQueued = live.size;
  for (const c of controllers) c.abort();
  await Promise.all(pending);
  await settle();
  return { queued, heapQueued, timersQueued, heapAfter: Deno.memoryUsage().heapUsed };
}

/**
 * With QUEUE_MEMORY_PAUSE=1 (bench/heap_growth.ts sets it), prints `pause <tag>`
 * and waits for a line on stdin, so that a heap snapshot can be taken there.
 */
async function pause(tag: string): Promise<void> {
  if (Deno.env.get("QUEUE_MEMORY_PAUSE") !== "1") return;
  console.log(`pause ${tag}`);
  await Deno.stdin.read(new Uint8Array(64));
}

await pause("before");
const r1 = await round();
await pause("after-first-round");
// A second round shows growth that is a leak, not a one-time warm-up.
const r2 = await round();
const { queued, heapQueued, timersQueued } = r1;
const heapAfter = r2.heapAfter;

console.log(JSON.stringify({
  requests: N,
  queued,
  heapBytesPerQueued: Math.round((heapQueued - heapBefore) / Math.max(1, queued)),
  heapBytesPerParkedFloor: Math.round(floorBytes),
  heapAfterOverBefore: Number((r1.heapAfter / heapBefore).toFixed(3)),
  heapAfterSecondRoundOverFirst: Number((heapAfter / r1.heapAfter).toFixed(3)),
  heapMiB: [heapBefore, r1.heapQueued, r1.heapAfter, r2.heapAfter].map((b) =>
    Number((b / 2 ** 20).toFixed(2))
  ),
  waitingAfterAbort: limiter.waiting,
  timersBefore,
  timersQueued,
  timersAfterAbort: live.size,
  upstreamCalls,
}));

first.abort();
await firstDone;
await gateway.close();
kv.close();
