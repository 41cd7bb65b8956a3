/**
 * The status board alone, over the interface it declares (`BoardService`):
 * what it says of a service, its keys and its pause, from parts made here
 * rather than a gateway, and nothing it cannot know.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../config/mod.ts";
import { KeyHealthStore, KeyPool } from "../../keys/mod.ts";
import { keyDayUsageKey, KvStatus } from "../../kv/mod.ts";
import { DayBudgets } from "../../limiter/mod.ts";
import { type BoardService, Metrics, StatusBoard } from "../../status/mod.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { withMemoryKv } from "../support/kv.ts";

const groq = loadConfig((n) => n === "GATEWAY_CONFIG" ? "{}" : undefined).services.groq;

function parts(kv: Deno.Kv, clock: FakeClock, levels: BoardService["limiter"]["levels"]) {
  const keys = [{ id: "k_a", secret: "sk-a" }, { id: "k_b", secret: "sk-b" }];
  const pool = new KeyPool("groq", keys, { store: new KeyHealthStore(kv) });
  pool.rest(keys[1], clock.now() + 60_000, "unauthorized", clock.now());
  const service: BoardService = {
    service: groq,
    pool,
    limiter: { waiting: 3, waitingByTeam: () => ({ acme: 2, "": 1 }), levels },
    keyDays: new DayBudgets({
      kv,
      clock,
      usageKey: (key, day, what) => keyDayUsageKey("groq", key, day, what),
    }),
    backoff: {
      pause: { until: clock.now() + 5000, strikes: 2, pauseMs: 5000, reason: "provider_429" },
    },
    fresh: () => undefined,
  };
  const up = new KvStatus({ clock, probe: () => Promise.resolve() });
  return {
    clock,
    instanceId: "i-1",
    runtimes: new Map([["groq", service]]),
    metrics: new Metrics(),
    kvStatus: up,
  };
}

Deno.test("StatusBoard: a service's limits, its queue here, its shared levels, its pause and its keys by state", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const board = new StatusBoard(
      parts(kv, clock, () => Promise.resolve({ bucketTokens: 7, inFlight: 2 })),
    );
    const s = (await board.snapshot()).services.groq;
    assert.deepEqual(s.limits, { rps: groq.rps, burst: groq.burst, maxConn: groq.maxConn });
    assert.equal(s.queuedHere, 3);
    assert.deepEqual(s.queuedByTeam, { acme: 2, "": 1 });
    assert.equal(s.bucketTokens, 7);
    assert.equal(s.inFlight, 2);
    assert.deepEqual(s.backoff, {
      until: new Date(clock.now() + 5000).toISOString(),
      reason: "provider_429",
      strikes: 2,
    });
    assert.deepEqual(
      s.keys.map((k) => [k.id, k.state, k.reason]),
      [["k_a", "active", undefined], ["k_b", "cooling", "unauthorized"]],
    );
  });
});

Deno.test("StatusBoard: a key's day is the day counter's (KV's count and this instance's), never a second count", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const p = parts(kv, clock, () => Promise.resolve(null));
    const keyDays = p.runtimes.get("groq")!.keyDays as DayBudgets;
    keyDays.count("k_a", clock.now());
    keyDays.addTokens("k_a", 40);
    await keyDays.flush();
    keyDays.count("k_a", clock.now());
    const [a, b] = (await new StatusBoard(p).snapshot()).services.groq.keys;
    const day = new Date(clock.now()).toISOString().slice(0, 10);
    assert.deepEqual(a.today, { day, requests: 2, tokens: 40 }, "one in KV, one not yet written");
    assert.deepEqual(b.today, { day, requests: 0, tokens: 0 });
    await keyDays.close();
  });
});

Deno.test("StatusBoard: levels it cannot read show as unknown (null), never as a guess", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    for (const levels of [() => Promise.resolve(null), () => Promise.reject(new Error("kv"))]) {
      const s = (await new StatusBoard(parts(kv, clock, levels)).snapshot()).services.groq;
      assert.equal(s.bucketTokens, null);
      assert.equal(s.inFlight, null);
    }
  });
});

Deno.test("StatusBoard: the metrics text gives keys by state and the shared levels as gauges", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const board = new StatusBoard(
      parts(kv, clock, () => Promise.resolve({ bucketTokens: 7, inFlight: 2 })),
    );
    const text = await board.metricsText();
    assert.match(text, /kvgate_keys\{service="groq",state="active"\} 1/);
    assert.match(text, /kvgate_keys\{service="groq",state="cooling"\} 1/);
    assert.match(text, /kvgate_bucket_tokens\{service="groq"\} 7/);
    assert.match(text, /kvgate_in_flight\{service="groq"\} 2/);
    assert.ok(!text.includes("sk-a") && !text.includes("sk-b"), "no key");
  });
});
