/**
 * Keys that pace themselves, in process on the fake clock: per-key quotas
 * (rpm, rpd, tpm), the provider's own headers, daily caps resting until
 * the provider's day resets, and the provider-wide pause.
 */
import assert from "node:assert/strict";
import type { Gateway } from "../../gateway/mod.ts";
import { keyId } from "../../keys/mod.ts";
import { keyDayUsageKey } from "../../kv/mod.ts";
import { FakeClock, flush, settle } from "../support/fake_clock.ts";
import { chatRequest, fakeUpstream, inProcessGateway, jsonAnswer } from "../support/in_process.ts";

const OK = {
  id: "c",
  choices: [{ message: { role: "assistant", content: "hi" } }],
  usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
};

interface Setup {
  clock: FakeClock;
  gateway: Gateway;
  calls: ReturnType<typeof fakeUpstream>["calls"];
  logs: Record<string, unknown>[];
  kv: Deno.Kv;
  [Symbol.asyncDispose](): Promise<void>;
}

async function setup(
  answer: (key: string | undefined, req: Request) => Response | Promise<Response>,
  service: Record<string, unknown>,
  keys: string,
  settings: Record<string, unknown> = {},
  shared?: { kv: Deno.Kv; clock: FakeClock },
): Promise<Setup> {
  const clock = shared?.clock ?? new FakeClock();
  const kv = shared?.kv ?? await Deno.openKv(":memory:");
  const upstream = fakeUpstream(answer as (k: string | undefined, r: Request) => Response);
  const logs: Record<string, unknown>[] = [];
  const gateway = await inProcessGateway(
    {
      ...settings,
      services: {
        openai: {
          target: "http://upstream.test",
          rps: 100,
          burst: 100,
          maxConn: 50,
          rateLimitHeaders: "none",
          ...service,
        },
      },
    },
    { OPENAI_API_KEYS: keys },
    { kv, clock, fetch: upstream.fetch, logs, random: () => 0.5 },
  );
  return {
    clock,
    gateway,
    calls: upstream.calls,
    logs,
    kv,
    async [Symbol.asyncDispose]() {
      await gateway.close();
      if (!shared) kv.close();
    },
  };
}

/**
 * A provider whose keys are token buckets on the fake clock (capacity
 * `capacity`, refilled at `perMinute` a minute), answering with OpenAI's
 * rate-limit headers, 429 past the bucket.
 */
function bucketProvider(clock: FakeClock, capacity: number, perMinute: number) {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const refused: number[] = [];
  const served: number[] = [];
  const answer = (key: string | undefined) => {
    const now = clock.now();
    const b = buckets.get(key!) ?? { tokens: capacity, at: now };
    b.tokens = Math.min(capacity, b.tokens + ((now - b.at) * perMinute) / 60_000);
    b.at = now;
    buckets.set(key!, b);
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    const untilFull = ((capacity - b.tokens) / perMinute) * 60_000;
    const headers = {
      "content-type": "application/json",
      "x-ratelimit-limit-requests": String(capacity),
      "x-ratelimit-remaining-requests": String(Math.floor(b.tokens)),
      "x-ratelimit-reset-requests": `${(untilFull / 1000).toFixed(2)}s`,
    };
    (ok ? served : refused).push(now);
    return ok
      ? new Response(JSON.stringify(OK), { headers })
      : new Response(JSON.stringify({ error: { message: "Rate limit reached" } }), {
        status: 429,
        headers: { ...headers, "retry-after": "3" },
      });
  };
  return { answer, refused, served };
}

/** Fires one request every `everyMs` of fake time for `forMs`; resolves with the statuses. */
async function openLoop(
  t: Setup,
  everyMs: number,
  forMs: number,
  request: () => Request = () => chatRequest(),
): Promise<number[]> {
  const answers: Promise<number>[] = [];
  for (let at = 0; at < forMs; at += everyMs) {
    answers.push(
      t.gateway.handler(request()).then(async (r) => {
        await r.body?.cancel();
        return r.status;
      }),
    );
    await t.clock.advance(everyMs);
  }
  return await settle(t.clock, Promise.all(answers), 250, 120_000);
}

Deno.test("headers only: after the first answers, no 429 for the rest of a 2-minute run at twice the allowed rate", async () => {
  const clock = new FakeClock();
  const provider = bucketProvider(clock, 20, 20);
  await using t = await setup(
    provider.answer,
    { rateLimitHeaders: "openai" },
    "sk-a,sk-b",
    { queueTimeoutMs: 60_000 },
    { kv: await Deno.openKv(":memory:"), clock },
  );
  // 2 keys × 20/min allowed; twice that is 80/min: one request every 750 ms, for 2 minutes.
  const t0 = clock.now();
  const statuses = await openLoop(t, 750, 120_000);
  const firstAnswers = provider.served.slice(0, 2).at(-1)!;
  const late429s = provider.refused.filter((at) => at > firstAnswers);
  assert.deepEqual(late429s, [], "no 429 after each key's first answer");
  const inRun = provider.served.filter((at) => at < t0 + 120_000).length;
  // What the provider allows in 2 min: 2 × (20 at once + 40 refilled) = 120; the rate part alone is 80.
  assert(inRun >= 0.9 * 80, `served ${inRun} in the run`);
  assert.equal(statuses.filter((s) => s === 200).length, provider.served.length);
  const pace = t.gateway.runtimes.get("openai")!.pacing!.paceOf(await keyId("sk-a"));
  assert.equal(pace?.rpm, 20, "the key is paced at the limit its headers state");
});

Deno.test("keyQuota.rpm: keys with room are preferred; with none, a request waits for the earliest, else 429 gateway_keys_resting with Retry-After", async () => {
  await using t = await setup(
    () => jsonAnswer(200, OK),
    { keyQuota: { rpm: 6 } },
    "sk-a,sk-b",
    { queueTimeoutMs: 5_000, leaseMs: 1000 },
  );
  // Each key may send its burst at once: 6 less 1 for the margin (1/10 s × (1 + 1) s rounded up).
  const burst = 2 * 5;
  for (let i = 0; i < burst; i++) {
    const r = await settle(t.clock, t.gateway.handler(chatRequest()));
    assert.equal(r.status, 200);
    await r.body?.cancel();
  }
  assert.equal(t.calls.filter((c) => c.key === "sk-a").length, 5);
  assert.equal(t.calls.filter((c) => c.key === "sk-b").length, 5);
  // Every key's next turn is 10 s away, past the 5 s deadline: 429, and said why.
  const r = await settle(t.clock, t.gateway.handler(chatRequest()), 100, 30_000);
  assert.equal(r.status, 429);
  assert.equal((await r.json()).error.code, "gateway_keys_resting");
  assert(Number(r.headers.get("retry-after")) >= 1);
  assert.equal(t.calls.length, burst, "nothing sent past the quota");
  // A request made with the next turn within its deadline waits for it.
  const t0 = t.clock.now();
  const waited = await settle(t.clock, t.gateway.handler(chatRequest()), 100, 30_000);
  assert.equal(waited.status, 200, "waited for a key's next turn (one every 10 s)");
  await waited.body?.cancel();
  assert(t.clock.now() - t0 >= 3_000, `waited ${t.clock.now() - t0} ms`);
  assert.equal(t.calls.length, burst + 1);
});

Deno.test("keyQuota.rpd: the key rests at its daily count until dayResetsAt, then comes back", async () => {
  // The fake clock starts at 05:58 UTC, so the provider's day ends two minutes in.
  const clock = new FakeClock(Date.UTC(2026, 10, 29, 5, 58));
  await using t = await setup(
    () => jsonAnswer(200, OK),
    { keyQuota: { rpd: 3 }, dayResetsAt: "06:00" },
    "sk-a",
    { queueTimeoutMs: 5_000 },
    { kv: await Deno.openKv(":memory:"), clock },
  );
  for (let i = 0; i < 3; i++) {
    const r = await settle(t.clock, t.gateway.handler(chatRequest()));
    assert.equal(r.status, 200);
    await r.body?.cancel();
  }
  const r = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.equal(r.status, 429);
  assert.equal((await r.json()).error.code, "gateway_keys_resting");
  const now = t.clock.now();
  const reset = nextAt(now, 6);
  assert(Math.abs(Number(r.headers.get("retry-after")) - (reset - now) / 1000) <= 2);
  assert.equal(t.calls.length, 3);
  assert(t.logs.some((l) => l.event === "key_rest" && l.reason === "daily_quota"));
  await t.clock.advance(reset - now + 1000);
  const back = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.equal(back.status, 200, "a new provider day");
  await back.body?.cancel();
  assert.equal(t.calls.length, 4);
});

Deno.test("keyQuota.rpd: a key whose day another instance spent is skipped for one that has room, not answered 429", async () => {
  await using t = await setup(() => jsonAnswer(200, OK), { keyQuota: { rpd: 3 } }, "sk-a,sk-b");
  const day = new Date(Math.floor(t.clock.now() / 86_400_000) * 86_400_000).toISOString()
    .slice(0, 10);
  await t.kv.set(
    keyDayUsageKey("openai", await keyId("sk-a"), day, "requests"),
    new Deno.KvU64(3n),
  );
  const r = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.equal(r.status, 200);
  await r.body?.cancel();
  assert.deepEqual(t.calls.map((c) => c.key), ["sk-b"]);
  const a = t.gateway.runtimes.get("openai")!.pool.health(await keyId("sk-a"));
  assert.equal(a?.reason, "daily_quota");
});

Deno.test("a daily cap answered by the provider (Groq's day count at 0, Gemini's PerDay 429) rests the key until the stated or the day's reset", async () => {
  let answer = 0;
  await using t = await setup(
    () => {
      answer++;
      if (answer === 1) {
        return new Response(JSON.stringify(OK), {
          headers: {
            "content-type": "application/json",
            "x-ratelimit-limit-requests": "1000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "2h0m0s",
          },
        });
      }
      return jsonAnswer(429, {
        error: {
          code: 429,
          message: "quota",
          details: [{ quotaId: "GenerateRequestsPerDayPerProjectPerModel" }],
        },
      });
    },
    { rateLimitHeaders: "groq", dayResetsAt: "08:00" },
    "sk-a,sk-b",
    { queueTimeoutMs: 5_000, maxRetries: 0 },
  );
  const first = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.equal(first.status, 200);
  await first.body?.cancel();
  const a = t.gateway.runtimes.get("openai")!.pool.health(await keyId("sk-a"));
  assert.equal(a?.reason, "daily_quota");
  assert(Math.abs(a!.until - (t.clock.now() + 7_200_000)) < 1000, "rests until the stated reset");
  const second = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.equal(second.status, 429);
  await second.body?.cancel();
  const b = t.gateway.runtimes.get("openai")!.pool.health(await keyId("sk-b"));
  assert.equal(b?.reason, "daily_quota");
  assert.equal(b!.until, nextAt(t.clock.now(), 8), "rests until the provider's day resets");
});

Deno.test("keyQuota.tpm: the input is reserved before sending and the answer's usage after it, so a request waits for room rather than earning a 429", async () => {
  const used = 200;
  await using t = await setup(
    () =>
      jsonAnswer(200, {
        ...OK,
        usage: { prompt_tokens: 20, completion_tokens: 180, total_tokens: used },
      }),
    { keyQuota: { tpm: 600 } },
    "sk-a",
    { queueTimeoutMs: 30_000, leaseMs: 1000 },
  );
  // tpm 600 = 10 a second; the burst is 600 less 10 × (1 + 1) s = 580. Each request costs ~25 as sent.
  const times: number[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await settle(t.clock, t.gateway.handler(chatRequest()), 100, 60_000);
    assert.equal(r.status, 200);
    await r.body?.cancel();
    times.push(t.clock.now());
  }
  // Three answers used 600 in all (the usage read from each): the fourth waits for ~4.5 s of refill.
  assert(times[2] - times[0] < 1000, "the first three fit the burst");
  assert(times[3] - times[2] >= 3000, `the fourth waited ${times[3] - times[2]} ms for room`);
  // A prompt larger than the whole minute never fits: refused at once as too large, never sent.
  const big = chatRequest({ messages: [{ role: "user", content: "x".repeat(4000) }] });
  const r = await settle(t.clock, t.gateway.handler(big), 100, 60_000);
  assert.equal(r.status, 413);
  assert.equal((await r.json()).error.code, "request_too_large");
  assert.equal(t.calls.length, 4);
});

Deno.test("provider-wide 429: every key refused → the service pauses until the named time, one probe, doubling; at most keys + 1 requests in 5 s, and clients get 200", async () => {
  const clock = new FakeClock();
  const refuseUntil = clock.now() + 5000;
  const sentAt: number[] = [];
  await using t = await setup(
    () => {
      sentAt.push(clock.now());
      if (clock.now() < refuseUntil) {
        return new Response('{"error":{"message":"account limit"}}', {
          status: 429,
          headers: { "retry-after": "2", "content-type": "application/json" },
        });
      }
      return jsonAnswer(200, OK);
    },
    {},
    "sk-a,sk-b,sk-c",
    { queueTimeoutMs: 30_000 },
    { kv: await Deno.openKv(":memory:"), clock },
  );
  const clients = Array.from({ length: 3 }, () => t.gateway.handler(chatRequest()));
  const answers = await settle(clock, Promise.all(clients), 100, 30_000);
  assert.deepEqual(answers.map((r) => r.status), [200, 200, 200]);
  for (const r of answers) await r.body?.cancel();
  const inRefusal = sentAt.filter((at) => at < refuseUntil).length;
  assert(inRefusal <= 3 + 1, `${inRefusal} upstream requests while refused`);
  const pauses = t.logs.filter((l) => l.event === "provider_backoff");
  assert.equal(pauses[0].ms, 2000, "the first pause is the time the provider named");
  assert.equal(pauses[1].ms, 4000, "the probe refused: twice as long");
  assert(t.logs.some((l) => l.event === "provider_backoff_end"));
  await flush();
});

Deno.test("provider-wide pause: another instance holds its requests too, within 1 s", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  let refuse = true;
  const answer = () =>
    refuse
      ? new Response('{"error":{"message":"account limit"}}', {
        status: 429,
        headers: { "retry-after": "20" },
      })
      : jsonAnswer(200, OK);
  await using one = await setup(answer, {}, "sk-a,sk-b", { queueTimeoutMs: 5000 }, { kv, clock });
  await using two = await setup(answer, {}, "sk-a,sk-b", { queueTimeoutMs: 5000 }, { kv, clock });
  const r = await settle(clock, one.gateway.handler(chatRequest()));
  assert.equal(r.status, 429, "the upstream's 429: the 20 s pause is past the deadline");
  await r.body?.cancel();
  await clock.advance(1100);
  refuse = false;
  const held = await settle(clock, two.gateway.handler(chatRequest()));
  assert.equal(held.status, 429);
  assert.equal((await held.json()).error.code, "gateway_provider_backoff");
  assert.equal(two.calls.length, 0, "the other instance sent nothing while paused");
  kv.close();
});

/** The next `hour`:00 UTC after `now`. */
function nextAt(now: number, hour: number): number {
  const day = 86_400_000;
  const offset = hour * 3_600_000;
  return Math.floor((now - offset) / day) * day + offset + day;
}
