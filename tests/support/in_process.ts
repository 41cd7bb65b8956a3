/**
 * A gateway driven in process: `handler(new Request(…))` against an
 * injected upstream `fetch`, no sockets.
 *
 * @module
 */
import { loadConfig } from "../../config/mod.ts";
import { createGateway, type Gateway, type GatewayOptions } from "../../gateway/mod.ts";
import { PASSWORD } from "./harness.ts";
import { FakeClock } from "./fake_clock.ts";

/** What the fake upstream was asked: the key it was called with, the path, the query, the headers. */
export interface UpstreamCall {
  key: string | undefined;
  path: string;
  search: string;
  headers: Headers;
}

/** How a fake provider answers a call made with `key`. */
export type Answer = (key: string | undefined, req: Request) => Response | Promise<Response>;

/** An upstream as a `fetch`: answers by key, records every call. */
export function fakeUpstream(answer: Answer) {
  const calls: UpstreamCall[] = [];
  const fetch = (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    const key = req.headers.get("authorization")?.replace(/^Bearer /, "");
    const url = new URL(req.url);
    calls.push({ key, path: url.pathname, search: url.search, headers: req.headers });
    const answered = Promise.resolve(answer(key, req));
    const signal = init?.signal;
    if (!signal) return answered;
    // As fetch does: an abort before the answer rejects the call.
    return new Promise((resolve, reject) => {
      const abort = () => reject(signal.reason ?? new DOMException("aborted", "AbortError"));
      if (signal.aborted) return abort();
      signal.addEventListener("abort", abort, { once: true });
      answered.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
    });
  };
  return { calls, fetch: fetch as typeof globalThis.fetch };
}

/** A gateway built from `GATEWAY_CONFIG`-like settings and env, in process. */
export async function inProcessGateway(
  settings: Record<string, unknown>,
  env: Record<string, string>,
  options: Omit<GatewayOptions, "log"> & { logs?: Record<string, unknown>[] },
): Promise<Gateway> {
  const all: Record<string, string> = {
    ACCESS_PASSWORD: PASSWORD,
    GATEWAY_CONFIG: JSON.stringify(settings),
    ...env,
  };
  const config = loadConfig((n) => all[n]);
  const logs = options.logs ?? [];
  return await createGateway(config, { ...options, log: (l) => logs.push(l) });
}

/** An in-process gateway with what it runs on; disposing it closes the gateway, and the KV unless shared. */
export interface InProcess {
  clock: FakeClock;
  kv: Deno.Kv;
  gateway: Gateway;
  calls: UpstreamCall[];
  logs: Record<string, unknown>[];
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The usual in-process setup: a gateway from `settings` and `env` over a
 * fake provider answering with `answer`, on the fake clock (and `:memory:`
 * KV, unless `shared` gives a clock and KV several gateways use), with
 * `random` fixed at 0.5 so that jittered times are exact.
 */
export async function gatewayOver(
  answer: Answer,
  settings: Record<string, unknown>,
  env: Record<string, string>,
  shared: { clock?: FakeClock; kv?: Deno.Kv } = {},
): Promise<InProcess> {
  const clock = shared.clock ?? new FakeClock();
  const kv = shared.kv ?? await Deno.openKv(":memory:");
  const upstream = fakeUpstream(answer);
  const logs: Record<string, unknown>[] = [];
  const gateway = await inProcessGateway(settings, env, {
    kv,
    clock,
    fetch: upstream.fetch,
    logs,
    random: () => 0.5,
  });
  return {
    clock,
    kv,
    gateway,
    calls: upstream.calls,
    logs,
    async [Symbol.asyncDispose]() {
      await gateway.close();
      if (!shared.kv) kv.close();
    },
  };
}

/** A POST of a chat completion to the gateway's openai service, with the password. */
export function chatRequest(extra: Record<string, unknown> = {}): Request {
  return new Request("http://gw/openai/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra }),
  });
}

/** A JSON answer as a provider gives it. */
export function jsonAnswer(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** An upstream `fetch` whose every answer is an event stream that sends one event and never ends. */
export function endlessStream(): typeof globalThis.fetch {
  return (() =>
    Promise.resolve(
      new Response(
        new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode("data: 1\n\n")) }),
        { headers: { "content-type": "text/event-stream" } },
      ),
    )) as typeof globalThis.fetch;
}
