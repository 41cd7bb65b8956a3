/**
 * Model groups in process, on the fake clock: the choice of a target before
 * anything is sent (resting keys, a spent day, the provider's pause, the
 * queue), the switch when a target fails before the first byte, the answer
 * when every target is out, what the answer and the log say, and teams.
 */
import assert from "node:assert/strict";
import { FakeClock, flush, settle } from "../support/fake_clock.ts";
import { inProcessGateway } from "../support/in_process.ts";
import { PASSWORD } from "../support/harness.ts";
import type { Gateway } from "../../gateway/mod.ts";

const TEAM = "team-token-0123456789abcdef";

/** What reached each upstream: its host, and the model asked for. */
interface Sent {
  host: string;
  model: unknown;
}

type Answer = (host: string, body: Record<string, unknown>) => Response | Promise<Response>;

/** A JSON answer with its length, as providers send one. */
function json(status: number, body: unknown): Response {
  const bytes = new TextEncoder().encode(JSON.stringify(body));
  return new Response(bytes, {
    status,
    headers: { "content-type": "application/json", "content-length": String(bytes.byteLength) },
  });
}

const ok = (host: string) => json(200, { id: host, choices: [{ message: { content: host } }] });

const failing = (status: number, code: string) =>
  json(status, { error: { message: code, type: code, code } });

interface Setup {
  gateway: Gateway;
  clock: FakeClock;
  sent: Sent[];
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

/** Three services on three fake upstreams and a group over them, in that order. */
async function setup(
  answer: Answer,
  extra: Record<string, unknown> = {},
  firstKeys = "k-first",
  firstPatch: Record<string, unknown> = {},
  shared?: { kv: Deno.Kv; clock: FakeClock },
): Promise<Setup> {
  const kv = shared?.kv ?? await Deno.openKv(":memory:");
  const clock = shared?.clock ?? new FakeClock();
  const sent: Sent[] = [];
  const logs: Record<string, unknown>[] = [];
  const fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = new Request(input, init);
    const host = new URL(req.url).hostname.replace(".test", "");
    const body = req.method === "POST" ? await req.json() : {};
    sent.push({ host, model: body.model });
    return await answer(host, body);
  }) as typeof globalThis.fetch;
  const service = (host: string) => ({
    target: `http://${host}.test`,
    style: "openai",
    rps: 100,
    burst: 100,
    maxConn: 10,
  });
  const gateway = await inProcessGateway(
    {
      maxRetries: 1,
      services: {
        first: { ...service("first"), ...firstPatch },
        second: service("second"),
        third: service("third"),
      },
      groups: {
        llama: {
          targets: [
            { service: "first", model: "llama-first" },
            { service: "second", model: "llama-second" },
            { service: "third", model: "llama-third" },
          ],
        },
      },
      ...extra,
    },
    { FIRST_API_KEYS: firstKeys, SECOND_API_KEYS: "k-second", THIRD_API_KEYS: "k-third" },
    { kv, clock, fetch, logs, random: () => 0.5 },
  );
  return {
    gateway,
    clock,
    sent,
    logs,
    close: async () => {
      await gateway.close();
      if (!shared) kv.close();
    },
  };
}

function chat(s: Setup, extra: Record<string, unknown> = {}, token = PASSWORD, path = "llama") {
  return settle(
    s.clock,
    s.gateway.handler(
      new Request(`http://gw/${path}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "anything", messages: [], ...extra }),
      }),
    ),
  );
}

/** Rests every key of `service` until `until` for `reason`, as a 401 or a spent day would. */
function restKeys(s: Setup, service: string, until: number, reason: string) {
  const pool = s.gateway.runtimes.get(service)!.pool;
  for (const key of pool.keys) pool.rest(key, until, reason, s.clock.now());
}

Deno.test("groups: the first target answers, asked for its own model; x-kvgate-target says so", async () => {
  const s = await setup((host) => ok(host));
  try {
    const res = await chat(s);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-kvgate-target"), "first/llama-first");
    assert.deepEqual(s.sent, [{ host: "first", model: "llama-first" }]);
    const line = s.logs.find((l) => l.status === 200)!;
    assert.equal(line.group, "llama");
    assert.equal(line.target, "first/llama-first");
    assert.equal(line.skipped, undefined);
  } finally {
    await s.close();
  }
});

Deno.test("groups: a target whose keys all rest is skipped with nothing sent to it; the log says why", async () => {
  const s = await setup((host) => ok(host));
  try {
    restKeys(s, "first", s.clock.now() + 60_000, "unauthorized");
    for (let i = 0; i < 3; i++) {
      const res = await chat(s);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-kvgate-target"), "second/llama-second");
    }
    assert.deepEqual(s.sent.map((c) => c.host), ["second", "second", "second"]);
    const line = s.logs.find((l) => l.status === 200)!;
    assert.deepEqual(line.skipped, [{ target: "first/llama-first", reason: "keys_resting" }]);
  } finally {
    await s.close();
  }
});

Deno.test("groups: a target whose keys' day is spent is skipped as day_spent", async () => {
  const s = await setup((host) => ok(host));
  try {
    restKeys(s, "first", s.clock.now() + 3_600_000, "daily_quota");
    const res = await chat(s);
    assert.equal(res.status, 200);
    assert.deepEqual(s.sent.map((c) => c.host), ["second"]);
    const line = s.logs.find((l) => l.status === 200)!;
    assert.deepEqual(line.skipped, [{ target: "first/llama-first", reason: "day_spent" }]);
  } finally {
    await s.close();
  }
});

Deno.test("groups: keys resting for less than switchAfterMs keep the first target (the request waits)", async () => {
  const s = await setup((host) => ok(host));
  try {
    restKeys(s, "first", s.clock.now() + 500, "rate_limited");
    const res = await chat(s);
    assert.equal(res.status, 200);
    assert.deepEqual(s.sent.map((c) => c.host), ["first"]);
  } finally {
    await s.close();
  }
});

Deno.test("groups: a target that answers 500 after its retries hands the request on; one log line names both", async () => {
  const s = await setup((host) => host === "first" ? failing(500, "server_error") : ok(host));
  try {
    const res = await chat(s);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-kvgate-target"), "second/llama-second");
    assert.deepEqual(s.sent, [
      { host: "first", model: "llama-first" },
      { host: "first", model: "llama-first" },
      { host: "second", model: "llama-second" },
    ]);
    const lines = s.logs.filter((l) => l.status !== undefined);
    assert.equal(lines.length, 1, "one log line for the request");
    assert.equal(lines[0].target, "second/llama-second");
    assert.deepEqual(lines[0].skipped, [{ target: "first/llama-first", reason: "upstream_error" }]);
  } finally {
    await s.close();
  }
});

Deno.test("groups: a provider-wide 429 on the first target goes to the second at once", async () => {
  const s = await setup((host) =>
    host === "first" ? failing(429, "rate_limit_exceeded") : ok(host)
  );
  try {
    const res = await chat(s);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-kvgate-target"), "second/llama-second");
    assert.equal(s.sent.filter((c) => c.host === "first").length, 1, "one try on the first");
    // The first target's key now rests: the next request skips it with nothing sent.
    await chat(s);
    assert.equal(s.sent.filter((c) => c.host === "first").length, 1);
  } finally {
    await s.close();
  }
});

Deno.test("groups: a 4xx of the request itself is the answer; no other target is asked", async () => {
  const s = await setup((host) => host === "first" ? failing(400, "bad_request") : ok(host));
  try {
    const res = await chat(s);
    assert.equal(res.status, 400);
    assert.deepEqual(s.sent.map((c) => c.host), ["first"]);
  } finally {
    await s.close();
  }
});

Deno.test("groups: a stream that fails after its first byte is not switched; the client sees the error", async () => {
  const s = await setup((host) => {
    if (host !== "first") return ok(host);
    const enc = new TextEncoder();
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (!sent) {
          sent = true;
          return c.enqueue(enc.encode('data: {"choices":[{"delta":{"content":"a"}}]}\n\n'));
        }
        c.error(new Error("upstream broke"));
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  try {
    const res = await chat(s, { stream: true });
    assert.equal(res.status, 200);
    const text = await settle(s.clock, res.text());
    assert.match(text, /upstream_error/, "the stream ends with an error event");
    assert.deepEqual(s.sent.map((c) => c.host), ["first"]);
  } finally {
    await s.close();
  }
});

Deno.test("groups: every target out → 429 with the earliest Retry-After, the body naming each reason", async () => {
  const s = await setup((host) => ok(host));
  try {
    const now = s.clock.now();
    restKeys(s, "first", now + 60_000, "unauthorized");
    restKeys(s, "second", now + 20_000, "rate_limited");
    restKeys(s, "third", now + 3_600_000, "daily_quota");
    const res = await chat(s);
    assert.equal(res.status, 429);
    assert.equal(res.headers.get("retry-after"), "20");
    const body = await res.json();
    assert.equal(body.error.code, "gateway_keys_resting");
    assert.match(body.error.message, /first\/llama-first: keys_resting/);
    assert.match(body.error.message, /second\/llama-second: keys_resting/);
    assert.match(body.error.message, /third\/llama-third: day_spent/);
    assert.equal(s.sent.length, 0, "nothing was sent");
  } finally {
    await s.close();
  }
});

Deno.test("groups: GET /<group>/v1/models lists the group's name as its one model", async () => {
  const s = await setup((host) => ok(host));
  try {
    const res = await s.gateway.handler(
      new Request("http://gw/llama/v1/models", {
        headers: { authorization: `Bearer ${PASSWORD}` },
      }),
    );
    assert.equal(res.status, 200);
    assert.deepEqual((await res.json()).data.map((m: { id: string }) => m.id), ["llama"]);
    assert.equal(s.sent.length, 0);
  } finally {
    await s.close();
  }
});

Deno.test("groups: a team allowed only the group reaches its targets through it, and nothing else", async () => {
  const s = await setup((host) => ok(host), {
    teams: { t: { token: TEAM, services: ["llama"] } },
  });
  try {
    restKeys(s, "first", s.clock.now() + 60_000, "unauthorized");
    const viaGroup = await chat(s, {}, TEAM);
    assert.equal(viaGroup.status, 200);
    assert.equal(viaGroup.headers.get("x-kvgate-target"), "second/llama-second");
    const direct = await chat(s, {}, TEAM, "second");
    assert.equal(direct.status, 403);
    assert.deepEqual(s.sent.map((c) => c.host), ["second"]);
  } finally {
    await s.close();
  }
});

Deno.test("groups: the metrics count each group request by target and each skip by reason", async () => {
  const s = await setup((host) => ok(host));
  try {
    restKeys(s, "first", s.clock.now() + 60_000, "unauthorized");
    await chat(s);
    await chat(s);
    const text = await s.gateway.status.metricsText();
    assert.match(
      text,
      /kvgate_group_requests_total\{group="llama",target="second\/llama-second",outcome="200"\} 2/,
    );
    assert.match(
      text,
      /kvgate_group_skips_total\{group="llama",target="first\/llama-first",reason="keys_resting"\} 2/,
    );
  } finally {
    await s.close();
  }
});

Deno.test("groups: the status shows each group with its targets' states", async () => {
  const s = await setup((host) => ok(host));
  try {
    restKeys(s, "first", s.clock.now() + 60_000, "unauthorized");
    const { groups } = await s.gateway.status.snapshot();
    assert.deepEqual(groups.map((g) => [g.name, g.targets.map((t) => [t.target, t.state])]), [
      ["llama", [
        ["first/llama-first", "keys_resting"],
        ["second/llama-second", "ready"],
        ["third/llama-third", "ready"],
      ]],
    ]);
    assert.equal(groups[0].targets[0].until, new Date(s.clock.now() + 60_000).toISOString());
  } finally {
    await s.close();
  }
});

Deno.test("groups: a team's request that moved on to the next target is charged one request of its budget", async () => {
  const s = await setup((host) => host === "first" ? failing(500, "server_error") : ok(host), {
    teams: { t: { token: TEAM, services: ["llama"], daily: { requests: 100 } } },
  });
  try {
    const res = await chat(s, {}, TEAM);
    assert.equal(res.status, 200);
    assert.equal(s.sent.length, 3, "two tries on the first, one on the second");
    const { teams } = await s.gateway.status.snapshot();
    const t = teams.find((x) => (x as { name: string }).name === "t") as {
      usageToday: { requests: number };
    };
    assert.equal(t.usageToday.requests, 1);
  } finally {
    await s.close();
  }
});

Deno.test("groups: while the first target's provider is paused the second serves; after the pause exactly one request probes the first", async () => {
  let recovered = false;
  let releaseProbe!: () => void;
  const probeHeld = new Promise<void>((r) => releaseProbe = r);
  const s = await setup(
    async (host) => {
      if (host !== "first") return ok(host);
      if (!recovered) return failing(429, "rate_limit_exceeded");
      await probeHeld; // the probe stays in flight until the test lets it answer
      return ok(host);
    },
    {},
    "k-first-1,k-first-2",
  );
  try {
    // Both keys answer 429: the provider is paused, and the request moves on.
    const first = await chat(s);
    assert.equal(first.headers.get("x-kvgate-target"), "second/llama-second");
    const pause = s.gateway.runtimes.get("first")!.backoff!.pause!;
    assert.ok(pause.until > s.clock.now(), "the first provider is paused");
    const during = await chat(s);
    assert.equal(during.headers.get("x-kvgate-target"), "second/llama-second");
    const firstCalls = () => s.sent.filter((c) => c.host === "first").length;
    const before = firstCalls();
    assert.equal(before, 2, "nothing was sent to the paused provider");
    // The pause runs out: the next request probes it; while the probe is out, no other goes there.
    await s.clock.advance(pause.until - s.clock.now() + 1);
    recovered = true;
    const probe = s.gateway.handler(chatRequest());
    await flush();
    const others = await Promise.all([chat(s), chat(s)]);
    assert.equal(firstCalls(), before + 1, "exactly one request probes the first provider");
    assert.deepEqual(
      others.map((r) => r.headers.get("x-kvgate-target")),
      ["second/llama-second", "second/llama-second"],
      "the others were served by the second meanwhile",
    );
    releaseProbe();
    const probed = await settle(s.clock, probe);
    assert.equal(probed.headers.get("x-kvgate-target"), "first/llama-first");
  } finally {
    releaseProbe();
    await s.close();
  }
});

/** A group chat request with the password (not settled: the caller holds it). */
function chatRequest(): Request {
  return new Request("http://gw/llama/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "anything", messages: [] }),
  });
}

Deno.test("groups: a stream whose first target fails before its first byte is switched; the client gets the second's stream", async () => {
  const sse = (host: string) =>
    new Response(`data: {"choices":[{"delta":{"content":"${host}"}}]}\n\ndata: [DONE]\n\n`, {
      headers: { "content-type": "text/event-stream" },
    });
  const s = await setup((host) => host === "first" ? failing(503, "overloaded") : sse(host));
  try {
    const res = await chat(s, { stream: true });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-kvgate-target"), "second/llama-second");
    assert.match(await settle(s.clock, res.text()), /"content":"second"[^]*\[DONE\]/);
    assert.deepEqual(s.sent.map((c) => c.host), ["first", "first", "second"]);
  } finally {
    await s.close();
  }
});

Deno.test("groups: once the first target's keyQuota.rpd is spent, the rest of the day goes to the second with nothing sent to the first", async () => {
  const s = await setup((host) => ok(host), {}, "k-first", { keyQuota: { rpd: 2 } });
  try {
    const targets = [];
    for (let i = 0; i < 5; i++) targets.push((await chat(s)).headers.get("x-kvgate-target"));
    assert.deepEqual(targets, [
      "first/llama-first",
      "first/llama-first",
      "second/llama-second",
      "second/llama-second",
      "second/llama-second",
    ]);
    assert.equal(s.sent.filter((c) => c.host === "first").length, 2);
    const last = s.logs.filter((l) => l.status === 200).at(-1)!;
    assert.deepEqual(last.skipped, [{ target: "first/llama-first", reason: "day_spent" }]);
  } finally {
    await s.close();
  }
});

Deno.test("groups: a first target found spent for the day on one instance is skipped by another (KV, until the provider's day resets), with nothing sent to it", async () => {
  const kv = await Deno.openKv(":memory:");
  const clock = new FakeClock();
  // Gemini's answer once its day is spent: a 429 naming a per-day quota.
  const perDay = (host: string) =>
    host === "first"
      ? json(429, {
        error: {
          code: 429,
          message: "quota",
          details: [{ quotaId: "GenerateRequestsPerDayPerProjectPerModel" }],
        },
      })
      : ok(host);
  const one = await setup(perDay, {}, "k-first", {}, { kv, clock });
  const two = await setup(perDay, {}, "k-first", {}, { kv, clock });
  try {
    const first = await chat(one);
    assert.equal(first.headers.get("x-kvgate-target"), "second/llama-second");
    await clock.advance(1100);
    for (let i = 0; i < 3; i++) {
      const res = await chat(two);
      assert.equal(res.headers.get("x-kvgate-target"), "second/llama-second");
    }
    assert.equal(two.sent.filter((c) => c.host === "first").length, 0, "nothing sent to the first");
    const line = two.logs.find((l) => l.status === 200)!;
    assert.deepEqual(line.skipped, [{ target: "first/llama-first", reason: "day_spent" }]);
    // The record in KV lasts until the provider's day resets (UTC midnight here), not longer.
    const midnight = Math.ceil(clock.now() / 86_400_000) * 86_400_000;
    const rest = two.gateway.runtimes.get("first")!.pool.keys
      .map((k) => two.gateway.runtimes.get("first")!.pool.health(k.id)!);
    assert.deepEqual(rest.map((h) => [h.reason, h.until]), [["daily_quota", midnight]]);
  } finally {
    await one.close();
    await two.close();
    kv.close();
  }
});

Deno.test("groups of Anthropic-shaped services: /<group>/v1/messages switches on a 500 with the model rewritten, and every target out answers in Anthropic's error shape", async () => {
  const kv = await Deno.openKv(":memory:");
  const clock = new FakeClock();
  const sent: Array<{ host: string; model: unknown; key: string | null }> = [];
  const fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = new Request(input, init);
    const host = new URL(req.url).hostname.replace(".test", "");
    const body = await req.json();
    sent.push({ host, model: body.model, key: req.headers.get("x-api-key") });
    if (host === "first") {
      return json(500, { type: "error", error: { type: "api_error", message: "overloaded" } });
    }
    return json(200, {
      type: "message",
      content: [{ type: "text", text: host }],
      model: body.model,
    });
  }) as typeof globalThis.fetch;
  const service = (host: string) => ({
    target: `http://${host}.test`,
    style: "anthropic",
    rps: 100,
    burst: 100,
    maxConn: 10,
  });
  const gateway = await inProcessGateway(
    {
      maxRetries: 0,
      services: { first: service("first"), second: service("second") },
      groups: {
        sonnet: {
          targets: [
            { service: "first", model: "claude-first" },
            { service: "second", model: "claude-second" },
          ],
        },
      },
    },
    { FIRST_API_KEYS: "k-first", SECOND_API_KEYS: "k-second" },
    { kv, clock, fetch, random: () => 0.5 },
  );
  const messages = () =>
    settle(
      clock,
      gateway.handler(
        new Request("http://gw/sonnet/v1/messages", {
          method: "POST",
          headers: { "x-api-key": PASSWORD, "content-type": "application/json" },
          body: JSON.stringify({ model: "sonnet", max_tokens: 5, messages: [] }),
        }),
      ),
    );
  try {
    const res = await messages();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-kvgate-target"), "second/claude-second");
    assert.deepEqual(sent.map((c) => [c.host, c.model, c.key]), [
      ["first", "claude-first", "k-first"],
      ["second", "claude-second", "k-second"],
    ]);
    // Every target out: Anthropic's own error shape, with the earliest Retry-After.
    for (const name of ["first", "second"]) {
      const pool = gateway.runtimes.get(name)!.pool;
      for (const key of pool.keys) {
        pool.rest(key, clock.now() + 30_000, "rate_limited", clock.now());
      }
    }
    const out = await messages();
    assert.equal(out.status, 429);
    assert.equal(out.headers.get("retry-after"), "30");
    const body = await out.json();
    assert.equal(body.type, "error");
    assert.equal(body.error.type, "rate_limit_error");
    assert.match(body.error.message, /first\/claude-first: keys_resting/);
  } finally {
    await gateway.close();
    kv.close();
  }
});
