/**
 * A shared pool no client can break (security review H1): what a client
 * controls never rests a shared key; a key is blamed only on the provider's
 * structured word, and disabled for long only when a probe that carries
 * nothing of the client confirms it. In process, on the fake clock, with an
 * upstream that answers as OpenAI, Anthropic and Gemini do.
 */
import assert from "node:assert/strict";
import type { Gateway } from "../../gateway/mod.ts";
import { keyId } from "../../keys/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import { inProcessGateway } from "../support/in_process.ts";
import { gemini429, keyOfRequest, providerAnswer } from "../support/provider_answers.ts";

const KEYS = ["sk-live-key-1", "sk-live-key-2", "sk-live-key-3", "sk-live-key-4"];

interface Call {
  key: string | undefined;
  method: string;
  path: string;
  headers: Headers;
  body: string;
}

interface Setup {
  clock: FakeClock;
  gateway: Gateway;
  calls: Call[];
  logs: Record<string, unknown>[];
  /** Answers served before the provider's rules, in order, for any key. */
  script: Response[];
  [Symbol.asyncDispose](): Promise<void>;
}

async function setup(accepted: readonly string[] = KEYS, settings = {}): Promise<Setup> {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  const calls: Call[] = [];
  const script: Response[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = new Request(input, init);
    const body = await req.text();
    const url = new URL(req.url);
    calls.push({
      key: keyOfRequest(req),
      method: req.method,
      path: url.pathname,
      headers: req.headers,
      body,
    });
    return script.shift() ?? providerAnswer({ keys: accepted }, req, body);
  };
  const logs: Record<string, unknown>[] = [];
  const limits = { rps: 100, burst: 100, maxConn: 10 };
  const gateway = await inProcessGateway(
    {
      ...settings,
      services: {
        openai: { target: "http://openai.test", ...limits },
        claude: { target: "http://anthropic.test", ...limits },
        gemini: { target: "http://gemini.test", ...limits },
      },
    },
    {
      OPENAI_API_KEYS: KEYS.join(","),
      CLAUDE_API_KEYS: KEYS.join(","),
      GEMINI_API_KEYS: KEYS.join(","),
    },
    { kv, clock, fetch: fetch as typeof globalThis.fetch, logs, random: () => 0.5 },
  );
  return {
    clock,
    gateway,
    calls,
    logs,
    script,
    async [Symbol.asyncDispose]() {
      await gateway.close();
      kv.close();
    },
  };
}

function post(path: string, body: unknown, headers: Record<string, string> = {}): Request {
  return new Request(`http://gw${path}`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${PASSWORD}`,
      "content-type": "application/json",
      ...headers,
    },
    body: JSON.stringify(body),
  });
}

const chat = (extra: Record<string, unknown> = {}) => ({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "hi" }],
  ...extra,
});

async function send(
  t: Setup,
  req: Request,
): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await settle(t.clock, t.gateway.handler(req));
  const text = await res.text();
  await t.gateway.runtimes.get("openai")!.pool.settled();
  return { status: res.status, text, headers: res.headers };
}

/** The state of every key of `service` that has a health record. */
async function rests(t: Setup, service: string): Promise<string[]> {
  const pool = t.gateway.runtimes.get(service)!.pool;
  await pool.settled();
  const out: string[] = [];
  for (const k of KEYS) {
    const h = pool.health(await keyId(k));
    if (h && h.until > t.clock.now()) out.push(`${h.state}:${h.reason}`);
  }
  return out;
}

Deno.test("H1a: an unknown field named insufficient_quota gets OpenAI's 400 back, tried once, and rests no key", async () => {
  await using t = await setup();
  for (let i = 0; i < 2; i++) {
    const r = await send(t, post("/openai/v1/chat/completions", chat({ insufficient_quota: 1 })));
    assert.equal(r.status, 400);
    assert.match(r.text, /Unrecognized request argument supplied: insufficient_quota/);
  }
  assert.equal(t.calls.length, 2, "one attempt per request: a 400 is the request's");
  assert.deepEqual(await rests(t, "openai"), []);
  const ok = await send(t, post("/openai/v1/chat/completions", chat()));
  assert.equal(ok.status, 200);
});

Deno.test("H1b: OpenAI-Organization and OpenAI-Project never reach the provider, so no 401 mismatched_organization", async () => {
  await using t = await setup();
  const r = await send(
    t,
    post("/openai/v1/chat/completions", chat(), {
      "openai-organization": "org-anything",
      "openai-project": "proj-anything",
    }),
  );
  assert.equal(r.status, 200);
  assert.equal(t.calls[0].headers.get("openai-organization"), null);
  assert.equal(t.calls[0].headers.get("openai-project"), null);
  assert.deepEqual(await rests(t, "openai"), []);
});

Deno.test("H1c: a browser's Origin on the Anthropic route never reaches Anthropic, and its CORS 401 would blame no key", async () => {
  await using t = await setup();
  const body = { model: "claude-x", max_tokens: 5, messages: [{ role: "user", content: "hi" }] };
  const r = await send(
    t,
    post("/claude/v1/messages", body, {
      origin: "chrome-extension://abcdef",
      "anthropic-version": "2023-06-01",
    }),
  );
  assert.equal(r.status, 200);
  assert.equal(t.calls[0].headers.get("origin"), null);
  // Were a CORS 401 to come back anyway (a provider that sees Origin another way), it is the request's.
  t.script.push(
    new Response(
      JSON.stringify({
        type: "error",
        error: {
          type: "authentication_error",
          message: "CORS requests must set 'anthropic-dangerous-direct-browser-access' header",
        },
      }),
      { status: 401, headers: { "content-type": "application/json" } },
    ),
  );
  const cors = await send(t, post("/claude/v1/messages", body));
  assert.equal(cors.status, 502, "in kvgate's words (L2), never the provider's 401");
  assert.equal(t.calls.length, 2, "not retried on another key");
  assert.deepEqual(await rests(t, "claude"), []);
});

Deno.test("H1d: a request too large for the key's TPM (429 Request too large) is answered as it is; no key rests and the service does not pause", async () => {
  await using t = await setup();
  const r = await send(t, post("/openai/v1/chat/completions", chat({ max_tokens: 200_000 })));
  assert.equal(r.status, 429);
  assert.match(r.text, /Request too large/);
  assert.equal(t.calls.length, 1);
  assert.deepEqual(await rests(t, "openai"), []);
  assert.equal(t.gateway.runtimes.get("openai")!.backoff?.pause, undefined);
  assert.equal((await send(t, post("/openai/v1/chat/completions", chat()))).status, 200);
});

Deno.test("a key the provider really refuses: the request retries on another key, a probe with nothing of the client confirms it, and it is disabled", async () => {
  await using t = await setup(KEYS.slice(1));
  const r = await send(t, post("/openai/v1/chat/completions", chat(), { cookie: "c=1" }));
  assert.equal(r.status, 200);
  const probe = t.calls.find((c) => c.method === "GET");
  assert.ok(probe, "a probe was sent");
  assert.equal(probe.path, "/v1/models");
  assert.equal(probe.key, KEYS[0]);
  assert.equal(probe.body, "");
  assert.deepEqual(
    [...probe.headers.keys()].sort(),
    ["accept", "accept-encoding", "authorization"],
    "the probe carries the key and nothing of the client",
  );
  assert.deepEqual(await rests(t, "openai"), ["disabled:unauthorized"]);
});

Deno.test("a 401 the probe does not confirm rests the key only while it is checked", async () => {
  await using t = await setup();
  t.script.push(new Response('{"error":{"message":"no"}}', { status: 401 }));
  const r = await send(t, post("/openai/v1/chat/completions", chat()));
  assert.equal(r.status, 200, "retried on another key");
  assert.deepEqual(
    await rests(t, "openai"),
    [],
    "the probe found the key good: it is back at once",
  );
  assert.ok(t.logs.some((l) => l.event === "key_probed" && l.verdict === "success"));
});

Deno.test("a request that two keys refuse in a row is the suspect: the second key is not blamed and the request is not tried further", async () => {
  await using t = await setup();
  const refusal = () =>
    new Response('{"error":{"message":"no","code":"insufficient_quota"}}', { status: 429 });
  t.script.push(refusal(), refusal());
  const r = await send(t, post("/openai/v1/chat/completions", chat()));
  assert.equal(r.status, 429);
  assert.equal(t.calls.filter((c) => c.method === "POST").length, 2);
  assert.deepEqual(await rests(t, "openai"), ["disabled:quota"]);
  assert.ok(t.logs.some((l) => l.event === "key_fault_suspect_request"));
});

Deno.test("a quota refusal is believed while the same requests succeed elsewhere; one team's third in a row with no success rests nothing", async () => {
  await using t = await setup();
  const refusal = () =>
    new Response('{"error":{"message":"no","code":"insufficient_quota"}}', { status: 429 });
  for (let i = 0; i < 3; i++) {
    // One refusal, then a success on the next key: the request is fine, the first key is spent.
    t.script.push(refusal());
    assert.equal((await send(t, post("/openai/v1/chat/completions", chat()))).status, 200);
  }
  assert.deepEqual(await rests(t, "openai"), [
    "disabled:quota",
    "disabled:quota",
    "disabled:quota",
  ]);
  const pool = t.gateway.runtimes.get("openai")!.pool;
  const quota = { kind: "key_rejected", reason: "quota" } as const;
  const now = t.clock.now();
  for (const k of pool.keys.slice(0, 3)) await pool.enable(k.id, now);
  await pool.settled();
  for (const k of pool.keys.slice(0, 3)) pool.report(k, quota, now, "flooder");
  assert.equal((await rests(t, "openai")).length, 2, "the third in a row rests nothing");
  assert.ok(t.logs.some((l) => l.event === "key_fault_suspect_team" && l.team === "flooder"));
});

Deno.test("Gemini: a per-minute 429 rests the key for its retryDelay; a PerDay 429 rests it as daily_quota until the service's day reset", async () => {
  await using t = await setup();
  t.script.push(gemini429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "22s"));
  const body = { contents: [{ parts: [{ text: "hi" }] }] };
  const path = "/gemini/v1beta/models/gemini-2.5-flash:generateContent";
  assert.equal((await send(t, post(path, body))).status, 200);
  const pool = t.gateway.runtimes.get("gemini")!.pool;
  const first = pool.health(await keyId(KEYS[0]))!;
  assert.deepEqual([first.state, first.reason], ["cooling", "rate_limited"]);
  const left = first.until - t.clock.now();
  assert.ok(left > 21_000 && left <= 22_000, `rests ${left} ms`);

  t.script.push(gemini429("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "0s"));
  assert.equal((await send(t, post(path, body))).status, 200);
  const refused = t.calls.at(-2)!.key!;
  const second = pool.health(await keyId(refused))!;
  assert.deepEqual([second.state, second.reason], ["disabled", "daily_quota"]);
  // gemini's day resets at 08:00 UTC (midnight Pacific in winter).
  assert.equal(new Date(second.until).toISOString().slice(11, 16), "08:00");
  assert.ok(second.until - t.clock.now() <= 86_400_000);
  assert.ok(t.logs.some((l) => l.event === "key_rest" && l.reason === "daily_quota"));
});
