/**
 * Keys that pace themselves, in process on the fake clock: per-key quotas
 * (rpm, rpd, tpm), the provider's own headers, daily caps resting until
 * the provider's day resets, and the provider-wide pause.
 */
import assert from "node:assert/strict";
import { keyId } from "../../keys/mod.ts";
import { keyDayUsageKey } from "../../kv/mod.ts";
import { FakeClock, flush, settle } from "../support/fake_clock.ts";
import { dayAcrossInstances } from "../support/day_across.ts";
import { chatRequest, jsonAnswer } from "../support/in_process.ts";

import { OK, setup } from "../support/key_pacing_setup.ts";
import { PASSWORD } from "../support/harness.ts";

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

Deno.test("keyQuota.rpd across instances: what another instance reserved and left unused is sent here within seconds; the key rests until the reset once the day stays spent", async () => {
  const clock = new FakeClock(Date.UTC(2026, 10, 29, 12, 0));
  await using kv = await Deno.openKv(":memory:");
  const instance = () =>
    setup(() => jsonAnswer(200, OK), { keyQuota: { rpd: 40 } }, "sk-a", { queueTimeoutMs: 1000 }, {
      kv,
      clock,
    });
  await using a = await instance();
  await using b = await instance();
  const { first, last } = await dayAcrossInstances(clock, [a, b], () => chatRequest(), 40);
  assert.equal(first.body.error?.code, "gateway_keys_resting");
  assert.equal(last.body.error?.code, "gateway_keys_resting");
  assert.ok(b.logs.some((l) => l.event === "key_rest" && l.reason === "daily_quota"));
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

Deno.test("a request waiting out the provider's pause goes at an admin's resume, not when the pause would end", async () => {
  let refuse = true;
  await using t = await setup(
    () =>
      refuse
        ? new Response('{"error":{"message":"account limit"}}', {
          status: 429,
          headers: { "retry-after": "20", "content-type": "application/json" },
        })
        : jsonAnswer(200, OK),
    {},
    "sk-a",
    { queueTimeoutMs: 30_000 },
  );
  const t0 = t.clock.now();
  const waiting = t.gateway.handler(chatRequest());
  await t.clock.advance(1000);
  assert.equal(t.calls.length, 1, "refused; the request waits out the 20 s pause");
  refuse = false;
  const admin = (path: string) =>
    t.gateway.handler(
      new Request(`http://gw/_kvgate/${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${PASSWORD}` },
      }),
    );
  assert.equal((await admin(`keys/openai/${await keyId("sk-a")}/enable`)).status, 200);
  assert.equal((await admin("services/openai/resume")).status, 200);
  await flush();
  const r = await settle(t.clock, waiting, 10);
  assert.equal(r.status, 200);
  await r.body?.cancel();
  assert(t.clock.now() - t0 < 1100, `answered ${t.clock.now() - t0} ms in, not at 20 s`);
  assert.equal(t.calls.length, 2);
});

/** The next `hour`:00 UTC after `now`. */
function nextAt(now: number, hour: number): number {
  const day = 86_400_000;
  const offset = hour * 3_600_000;
  return Math.floor((now - offset) / day) * day + offset + day;
}
