/**
 * A mock provider on 127.0.0.1 that behaves like the real ones: OpenAI chat
 * completions (JSON and SSE), /v1/models, Anthropic /v1/messages, gemini's
 * native path, per-key rate limits answering 429 + Retry-After (a sliding
 * window, or token buckets as providers describe their limits, with the
 * rate-limit headers of each dialect), a refuse-every-key window, 401 for
 * unknown keys, gzip when asked or forced, latency and chunk delays, and a
 * record of what it received.
 *
 * @module
 */

import { providerAnswer } from "./provider_answers.ts";

/** One request as the mock saw it. */
export interface Received {
  key: string | undefined;
  method: string;
  path: string;
  search: string;
  headers: Headers;
  body: string;
  at: number;
}

/** A scripted answer, served instead of the normal one. */
export interface Scripted {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

/** Options for {@linkcode startMockUpstream}. */
export interface MockOptions {
  /** Keys the mock accepts; others get 401. Default: any key. */
  keys?: string[];
  /** Requests per second each key may make before 429 (sliding 1 s window). */
  perKeyRps?: number;
  /** Retry-After the mock sends with its 429s, in seconds. Default 1. */
  retryAfterSec?: number;
  /** Delay before response headers, in ms. Default 0. */
  latencyMs?: number;
  /** Delay between SSE chunks, in ms. Default 0. */
  chunkDelayMs?: number;
  /** SSE chunks per streamed answer. Default 3. */
  chunks?: number;
  /** Gzip every body even when asked for identity. */
  forceGzip?: boolean;
  /** Send each SSE event in two chunks, `chunkDelayMs` apart (an event cut by TCP). */
  splitEvents?: boolean;
  /**
   * Each key a token bucket of `capacity` requests refilled at `perMinute`
   * per `minuteMs` (default 60000): 429 past it, with `retry-after` until
   * the next request fits.
   */
  keyBucket?: { capacity: number; perMinute: number; minuteMs?: number };
  /** The rate-limit headers sent on every answer of a bucketed key, in this dialect. */
  headers?: "openai" | "groq" | "cerebras" | "anthropic";
  /**
   * Every request that arrives before `until` (epoch ms) gets 429, on every
   * key (a provider-wide limit), with this `retry-after` (s). Decided on
   * arrival, as a provider's limiter does: a request already inside when
   * the option is set is answered as before.
   */
  refuseAll?: { until: number; retryAfterSec?: number };
  /**
   * Answer every request as OpenAI, Anthropic and Gemini answer the security
   * review's reproductions (`provider_answers.ts`), accepting these keys.
   */
  provider?: { keys: string[] };
}

/** One key's request bucket in the mock. */
interface Bucket {
  tokens: number;
  at: number;
}

/** A running mock upstream. */
export interface MockUpstream {
  url: string;
  received: Received[];
  /** 429s the per-key rate limit answered. */
  rateLimited: number;
  /** When each of those 429s was sent (epoch ms). */
  rateLimitedAt: number[];
  /** Most requests in flight at once (a streamed answer counts until its end). */
  maxInFlight: number;
  inFlight: number;
  options: MockOptions;
  /** Answers served next, per key (`"*"` for any key), before normal behaviour. */
  script: Map<string, Scripted[]>;
  reset(): void;
  close(): Promise<void>;
}

function keyOf(req: Request, url: URL): string | undefined {
  const auth = req.headers.get("authorization");
  if (auth?.startsWith("Bearer ")) return auth.slice(7);
  return req.headers.get("x-api-key") ?? req.headers.get("x-goog-api-key") ??
    url.searchParams.get("key") ??
    undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function gzip(text: string): Promise<Uint8Array<ArrayBuffer>> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Starts the mock on an ephemeral loopback port. */
export function startMockUpstream(options: MockOptions = {}): Promise<MockUpstream> {
  const ac = new AbortController();
  const windows = new Map<string, number[]>();
  const buckets = new Map<string, Bucket>();

  /** Takes one request from `key`'s bucket; the headers to send, and whether it was refused. */
  function takeFromBucket(key: string): { refused: boolean; headers: Record<string, string> } {
    const { capacity, perMinute, minuteMs = 60_000 } = mock.options.keyBucket!;
    const now = Date.now();
    const perMs = perMinute / minuteMs;
    const b = buckets.get(key) ?? { tokens: capacity, at: now };
    b.tokens = Math.min(capacity, b.tokens + (now - b.at) * perMs);
    b.at = now;
    buckets.set(key, b);
    const refused = b.tokens < 1;
    if (!refused) b.tokens -= 1;
    const untilFull = (capacity - b.tokens) / perMs;
    const untilOne = refused ? (1 - b.tokens) / perMs : 0;
    const headers = dialectHeaders(capacity, Math.floor(b.tokens), untilFull, now);
    if (refused) headers["retry-after"] = String(Math.max(1, Math.ceil(untilOne / 1000)));
    return { refused, headers };
  }

  /** The rate-limit headers of the mock's dialect for a bucket (tokens: a fixed, ample figure). */
  function dialectHeaders(
    limit: number,
    remaining: number,
    untilFullMs: number,
    now: number,
  ): Record<string, string> {
    const go = (ms: number) => `${Math.floor(ms / 60_000)}m${((ms % 60_000) / 1000).toFixed(2)}s`;
    switch (mock.options.headers) {
      case "openai":
      case "groq":
        return {
          "x-ratelimit-limit-requests": String(limit),
          "x-ratelimit-remaining-requests": String(remaining),
          "x-ratelimit-reset-requests": go(untilFullMs),
          "x-ratelimit-limit-tokens": "1000000",
          "x-ratelimit-remaining-tokens": "999000",
          "x-ratelimit-reset-tokens": "60ms",
        };
      case "cerebras":
        return {
          "x-ratelimit-limit-requests-day": String(limit),
          "x-ratelimit-remaining-requests-day": String(remaining),
          "x-ratelimit-reset-requests-day": String(untilFullMs / 1000),
          "x-ratelimit-limit-tokens-minute": "1000000",
          "x-ratelimit-remaining-tokens-minute": "999000",
          "x-ratelimit-reset-tokens-minute": "0.06",
        };
      case "anthropic":
        return {
          "anthropic-ratelimit-requests-limit": String(limit),
          "anthropic-ratelimit-requests-remaining": String(remaining),
          "anthropic-ratelimit-requests-reset": new Date(now + untilFullMs).toISOString(),
        };
      default:
        return {};
    }
  }
  const mock: MockUpstream = {
    url: "",
    received: [],
    maxInFlight: 0,
    inFlight: 0,
    rateLimited: 0,
    rateLimitedAt: [],
    options,
    script: new Map(),
    reset() {
      mock.received.length = 0;
      mock.maxInFlight = 0;
      windows.clear();
      buckets.clear();
      mock.script.clear();
    },
    close: async () => {
      ac.abort();
      await server.finished;
    },
  };

  function enter(): () => void {
    mock.inFlight++;
    mock.maxInFlight = Math.max(mock.maxInFlight, mock.inFlight);
    let left = false;
    return () => {
      if (!left) {
        left = true;
        mock.inFlight--;
      }
    };
  }

  async function respond(
    req: Request,
    status: number,
    body: string,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    const h = new Headers({ "content-type": "application/json", ...headers });
    const wantsGzip = /gzip/.test(req.headers.get("accept-encoding") ?? "");
    if (mock.options.forceGzip || wantsGzip) {
      h.set("content-encoding", "gzip");
      return new Response(await gzip(body), { status, headers: h });
    }
    return new Response(body, { status, headers: h });
  }

  /** A 429 of the per-key or account-wide limit, counted. */
  function refuse(req: Request, message: string, headers: Record<string, string>) {
    mock.rateLimited++;
    mock.rateLimitedAt.push(Date.now());
    return respond(
      req,
      429,
      JSON.stringify({ error: { message, type: "requests", code: "rate_limit_exceeded" } }),
      headers,
    );
  }

  function sse(
    req: Request,
    whole: string[],
    leave: () => void,
    extra: Record<string, string> = {},
  ): Response {
    const delay = mock.options.chunkDelayMs ?? 0;
    const events = mock.options.splitEvents
      ? whole.flatMap((e) => [e.slice(0, e.length >> 1), e.slice(e.length >> 1)])
      : whole;
    const enc = new TextEncoder();
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (i > 0 && delay > 0) await sleep(delay);
        if (i >= events.length) {
          controller.close();
          leave();
          return;
        }
        controller.enqueue(enc.encode(events[i++]));
      },
      cancel() {
        leave();
      },
    });
    req.signal.addEventListener("abort", leave);
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache", ...extra },
    });
  }

  /** SSE chunks of one answer: a model named `chunks-N` asks for N, else the mock's option. */
  function chunkCount(model: string): number {
    const asked = /^chunks-(\d+)$/.exec(model)?.[1];
    return asked === undefined ? mock.options.chunks ?? 3 : Number(asked);
  }

  function chatChunks(model: string): string[] {
    const n = chunkCount(model);
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      out.push(`data: ${
        JSON.stringify({
          id: "chatcmpl-mock",
          object: "chat.completion.chunk",
          created: 1,
          model,
          choices: [{ index: 0, delta: { content: `part${i} ` }, finish_reason: null }],
        })
      }\n\n`);
    }
    out.push(`data: ${
      JSON.stringify({
        id: "chatcmpl-mock",
        object: "chat.completion.chunk",
        created: 1,
        model,
        choices: [{ index: 0, delta: {}, finish_reason: "stop" }],
      })
    }\n\n`);
    out.push("data: [DONE]\n\n");
    return out;
  }

  function anthropicChunks(model: string): string[] {
    const ev = (type: string, data: unknown) => `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
    const n = chunkCount(model);
    const out = [
      ev("message_start", {
        type: "message_start",
        message: {
          id: "msg_mock",
          type: "message",
          role: "assistant",
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: 3, output_tokens: 0 },
        },
      }),
      ev("content_block_start", {
        type: "content_block_start",
        index: 0,
        content_block: { type: "text", text: "" },
      }),
    ];
    for (let i = 0; i < n; i++) {
      out.push(ev("content_block_delta", {
        type: "content_block_delta",
        index: 0,
        delta: { type: "text_delta", text: `part${i} ` },
      }));
    }
    out.push(ev("content_block_stop", { type: "content_block_stop", index: 0 }));
    out.push(ev("message_delta", {
      type: "message_delta",
      delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: { output_tokens: n },
    }));
    out.push(ev("message_stop", { type: "message_stop" }));
    return out;
  }

  async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const key = keyOf(req, url);
    const body = req.body ? await req.text() : "";
    const arrivedAt = Date.now();
    // Decided on arrival (see MockOptions.refuseAll), answered after the latency.
    const refuseAll = mock.options.refuseAll;
    const refusedAll = refuseAll !== undefined && arrivedAt < refuseAll.until;
    mock.received.push({
      key,
      method: req.method,
      path: url.pathname,
      search: url.search,
      headers: req.headers,
      body,
      at: arrivedAt,
    });
    const leave = enter();
    let streaming = false;
    try {
      if (mock.options.latencyMs) await sleep(mock.options.latencyMs);
      const scripted = (key && mock.script.get(key)?.shift()) ?? mock.script.get("*")?.shift();
      if (scripted) {
        return await respond(req, scripted.status, scripted.body ?? "{}", scripted.headers);
      }
      if (mock.options.provider) return providerAnswer(mock.options.provider, req, body);
      const anthropic = url.pathname === "/v1/messages";
      if (!key || (mock.options.keys && !mock.options.keys.includes(key))) {
        return await respond(
          req,
          401,
          JSON.stringify(
            anthropic
              ? {
                type: "error",
                error: { type: "authentication_error", message: "invalid x-api-key" },
              }
              : {
                error: {
                  message: "Incorrect API key provided",
                  type: "invalid_request_error",
                  code: "invalid_api_key",
                },
              },
          ),
        );
      }
      if (refusedAll) {
        return await refuse(req, "Too many requests from this account", {
          "retry-after": String(refuseAll.retryAfterSec ?? 1),
        });
      }
      let limitHeaders: Record<string, string> = {};
      if (mock.options.keyBucket) {
        const taken = takeFromBucket(key);
        limitHeaders = taken.headers;
        if (taken.refused) {
          return await refuse(req, "Rate limit reached for requests", limitHeaders);
        }
      }
      if (mock.options.perKeyRps !== undefined) {
        const now = Date.now();
        const w = (windows.get(key) ?? []).filter((t) => now - t < 1000);
        if (w.length >= mock.options.perKeyRps) {
          windows.set(key, w);
          return await refuse(req, "Rate limit reached", {
            "retry-after": String(mock.options.retryAfterSec ?? 1),
          });
        }
        w.push(now);
        windows.set(key, w);
      }
      const json = body && /json/.test(req.headers.get("content-type") ?? "")
        ? JSON.parse(body)
        : {};
      const model = json.model ?? "mock-model";
      if (url.pathname.endsWith("/models") && req.method === "GET") {
        return await respond(
          req,
          200,
          JSON.stringify({
            object: "list",
            data: [{ id: "mock-model", object: "model", created: 1, owned_by: "mock" }],
          }),
        );
      }
      if (url.pathname.endsWith("/chat/completions")) {
        if (json.stream) {
          streaming = true;
          return sse(req, chatChunks(model), leave, limitHeaders);
        }
        return await respond(
          req,
          200,
          JSON.stringify({
            id: "chatcmpl-mock",
            object: "chat.completion",
            created: 1,
            model,
            choices: [{
              index: 0,
              message: { role: "assistant", content: "Hello from mock" },
              finish_reason: "stop",
              logprobs: null,
            }],
            usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
          }),
          limitHeaders,
        );
      }
      if (anthropic) {
        if (json.stream) {
          streaming = true;
          return sse(req, anthropicChunks(model), leave);
        }
        return await respond(
          req,
          200,
          JSON.stringify({
            id: "msg_mock",
            type: "message",
            role: "assistant",
            model,
            content: [{ type: "text", text: "Hello from mock" }],
            stop_reason: "end_turn",
            stop_sequence: null,
            usage: { input_tokens: 3, output_tokens: 3 },
          }),
        );
      }
      if (/:generateContent$/.test(url.pathname)) {
        return await respond(
          req,
          200,
          JSON.stringify({ candidates: [{ content: { parts: [{ text: "Hello from mock" }] } }] }),
        );
      }
      return await respond(
        req,
        404,
        JSON.stringify({ error: { message: "not found", type: "invalid_request_error" } }),
      );
    } finally {
      if (!streaming) leave();
    }
  }

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    handle,
  );
  mock.url = `http://127.0.0.1:${server.addr.port}`;
  return Promise.resolve(mock);
}
