/**
 * The parts of keys that pace themselves, each alone: the quota figures,
 * the service fields, the provider-wide pause, the tokens meter, the
 * ledger moved to the provider's count, and headers shared between instances.
 */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../config/mod.ts";
import {
  estimateInputTokens,
  KeyPacing,
  type KeyPacingOptions,
  KeyRateStore,
  nextDayReset,
  parseKeyQuota,
  perMinuteLimits,
  type PooledKey,
  ProviderBackoff,
  TokenMeter,
} from "../../keys/mod.ts";
import {
  KvCapacityStore,
  MemoryCapacityStore,
  ScopeLimiter,
  type ServiceLimits,
} from "../../limiter/mod.ts";
import { FakeClock } from "../support/fake_clock.ts";

const env = (vars: Record<string, string>) => (n: string) => vars[n];

Deno.test("perMinuteLimits: the provider's rate in full, a burst that leaves the lease lifetime and 1 s of margin", () => {
  // 20/min, τ = 2 s: the ledger may let out burst + rate·(W + 2 s); the provider allows 20 + rate·W.
  const l = perMinuteLimits(20, 2000);
  assert.equal(l.rps, 20 / 60);
  assert.equal(l.burst, 19);
  assert(l.burst + l.rps * 3 <= 20, "within the provider's bucket with 1 s to spare");
  assert.equal(perMinuteLimits(1, 2000).burst, 1, "never below one");
  assert.equal(perMinuteLimits(6000, 2000).burst, 5700);
});

Deno.test("estimateInputTokens: one per 4 bytes, at least 1; nextDayReset: the next HH:MM UTC", () => {
  assert.equal(estimateInputTokens(0), 1);
  assert.equal(estimateInputTokens(401), 101);
  const now = Date.UTC(2026, 10, 29, 7, 30);
  assert.equal(nextDayReset(now, 8 * 3_600_000), Date.UTC(2026, 10, 29, 8, 0));
  assert.equal(nextDayReset(now, 0), Date.UTC(2026, 10, 30, 0, 0));
  assert.equal(
    nextDayReset(Date.UTC(2026, 10, 29, 8, 0), 8 * 3_600_000),
    Date.UTC(2026, 10, 30, 8),
  );
});

Deno.test("keyQuota, dayResetsAt, rateLimitHeaders: validated with the field named; built-ins carry their dialect and day", () => {
  assert.deepEqual(parseKeyQuota({ rpm: 30, rpd: 1000 }), { rpm: 30, rpd: 1000 });
  assert.throws(() => parseKeyQuota({ rpm: 0 }), /keyQuota.rpm must be a positive integer/);
  assert.throws(() => parseKeyQuota({ rps: 3 }), /keyQuota.rps is not a known field/);
  const c = loadConfig(env({}));
  assert.equal(c.services.groq.rateLimitHeaders, "groq");
  assert.equal(c.services.cerebras.rateLimitHeaders, "cerebras");
  assert.equal(c.services.claude.rateLimitHeaders, "anthropic");
  assert.equal(c.services.openai.rateLimitHeaders, "openai");
  assert.equal(c.services.gemini.dayResetsAt, "08:00");
  assert.equal(c.services.gemini.dayResetMs, 8 * 3_600_000);
  assert.deepEqual(c.services.groq.keyQuota, {});
  const added = loadConfig(env({
    GATEWAY_CONFIG: JSON.stringify({
      services: { mine: { target: "https://x.test", keyQuota: { rpm: 30, tpm: 6000 } } },
    }),
  }));
  assert.equal(added.services.mine.rateLimitHeaders, "openai", "openai for added services");
  assert.deepEqual(added.services.mine.keyQuota, { rpm: 30, tpm: 6000 });
  const bad = (service: Record<string, unknown>, message: RegExp) =>
    assert.throws(
      () =>
        loadConfig(env({
          GATEWAY_CONFIG: JSON.stringify({
            services: { mine: { target: "https://x.test", ...service } },
          }),
        })),
      (e) => e instanceof ConfigError && message.test(e.message),
    );
  bad({ keyQuota: { rpm: -1 } }, /services\.mine\.keyQuota\.rpm must be a positive integer/);
  bad({ keyQuota: 30 }, /services\.mine\.keyQuota must be an object/);
  bad({ dayResetsAt: "25:00" }, /services\.mine\.dayResetsAt must be "HH:MM"/);
  bad({ rateLimitHeaders: "azure" }, /services\.mine\.rateLimitHeaders must be one of/);
});

/** The pause in force (read through a call: an assert on `b.pause` would narrow its type for good). */
const pauseOf = (b: ProviderBackoff) => b.pause;

function backoff(keys: number, clock: FakeClock, logs: Record<string, unknown>[] = []) {
  return new ProviderBackoff({
    service: "s",
    keys,
    clock,
    instanceId: "me",
    log: (event, detail) => logs.push({ event, ...detail }),
  });
}

Deno.test("ProviderBackoff: every key that answered lately got 429 (two or more, or the only key) → a pause; one success among them → none", async () => {
  const clock = new FakeClock();
  const b = backoff(3, clock);
  b.answered("a", true, 1000, clock.now(), false);
  assert.equal(b.pause, undefined, "one key of three is that key's limit");
  b.answered("b", false, undefined, clock.now(), false);
  b.answered("c", true, 1000, clock.now(), false);
  assert.equal(b.pause, undefined, "b answered 200 within the window");
  clock.advanceSync(6000);
  b.answered("a", true, undefined, clock.now(), false);
  b.answered("c", true, undefined, clock.now(), false);
  assert.equal(pauseOf(b)?.pauseMs, 5000, "no time named: 5 s");
  assert.deepEqual(b.turn(clock.now()), { go: false, untilMs: clock.now() + 5000 });
  const one = backoff(1, clock);
  one.answered("a", true, 3000, clock.now(), false);
  assert.equal(one.pause?.pauseMs, 3000, "the only key: the time it named");
  await Promise.resolve();
});

Deno.test("ProviderBackoff: a key's success to a request sent before the first refused one says nothing of now, so two refused keys pause the service", async () => {
  const clock = new FakeClock();
  const b = backoff(3, clock);
  const before = clock.now();
  clock.advanceSync(10);
  // Two requests in flight on one key and one on another when the provider starts refusing.
  b.answered("a", true, 2000, clock.now() - 5, false);
  b.answered("a", true, 2000, clock.now() - 3, false);
  b.answered("c", false, undefined, before, false); // sent before either refused one
  assert.equal(b.pause, undefined, "one key refused is that key's limit");
  b.answered("b", true, 2000, clock.now() - 4, false);
  assert.equal(pauseOf(b)?.pauseMs, 2000, "c's success predates the refusals: the pause starts");
  const other = backoff(3, clock);
  other.answered("a", true, 2000, clock.now() - 5, false);
  other.answered("c", false, undefined, clock.now() - 1, false); // sent after: c still serves
  other.answered("b", true, 2000, clock.now() - 4, false);
  assert.equal(other.pause, undefined, "a success sent since the first refusal: no pause");
  await Promise.resolve();
});

Deno.test("ProviderBackoff: after the pause one probe; a 429 doubles the pause (at most 5 min), a success ends it; an answer to a request sent before the pause does not", async () => {
  const clock = new FakeClock();
  const logs: Record<string, unknown>[] = [];
  const b = backoff(2, clock, logs);
  const sent = clock.now();
  b.answered("a", true, 2000, sent, false);
  b.answered("b", true, 2000, sent, false);
  b.answered("a", false, undefined, sent, false);
  assert(b.pause, "a request sent before the pause says nothing of it");
  clock.advanceSync(2000);
  const probe = await b.turn(clock.now());
  assert.deepEqual(probe, { go: true, probe: true });
  assert.deepEqual(
    b.turn(clock.now()),
    { go: false, untilMs: clock.now() + 250 },
    "only one probe",
  );
  b.answered("a", true, 1000, clock.now(), true);
  assert.equal(pauseOf(b)?.pauseMs, 4000);
  assert.equal(pauseOf(b)?.strikes, 2);
  for (let i = 0; i < 10; i++) {
    clock.advanceSync(pauseOf(b)!.pauseMs);
    assert.equal((await b.turn(clock.now())).go, true);
    b.answered("a", true, undefined, clock.now(), true);
  }
  assert.equal(pauseOf(b)?.pauseMs, 300_000, "capped");
  clock.advanceSync(300_000);
  await b.turn(clock.now());
  b.answered("b", false, undefined, clock.now(), true);
  assert.equal(pauseOf(b), undefined);
  assert.equal(b.turn(clock.now()), b.turn(clock.now()), "no pause: the same constant, no promise");
  assert.deepEqual(
    logs.map((l) => l.event).filter((e) => e === "provider_backoff_end"),
    ["provider_backoff_end"],
  );
});

Deno.test("ProviderBackoff in KV: one instance's pause and probe hold for another; the probe's success ends it for both", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  try {
    const mk = (id: string) =>
      new ProviderBackoff({ service: "s", keys: 2, clock, kv, instanceId: id });
    const one = mk("one"), two = mk("two");
    one.answered("a", true, 1000, clock.now(), false);
    one.answered("b", true, 1000, clock.now(), false);
    await new Promise((r) => setTimeout(r, 20)); // the pause's write lands
    await two.refresh();
    assert.equal(pauseOf(two)?.until, pauseOf(one)?.until);
    clock.advanceSync(1000);
    assert.deepEqual(await one.turn(clock.now()), { go: true, probe: true });
    await two.refresh();
    const t = await two.turn(clock.now());
    assert.equal(t.go, false, "the other instance's probe is out");
    one.answered("a", false, undefined, clock.now(), true);
    await new Promise((r) => setTimeout(r, 20));
    await two.refresh();
    assert.equal(pauseOf(two), undefined, "ended for both");
  } finally {
    kv.close();
  }
});

Deno.test("TokenMeter: spends from memory while a leased batch lasts; a cost past the deadline is refused with the wait", async () => {
  const clock = new FakeClock();
  const limits: ServiceLimits = { rps: 10, burst: 100, maxConn: 1 };
  const meter = new TokenMeter({
    store: new MemoryCapacityStore(limits, clock),
    clock,
    tpm: 600,
    leaseMs: 1000,
  });
  assert.equal(meter.tryTake(5, clock.now()), false, "nothing leased yet");
  assert.deepEqual(await meter.take(60, clock.now() + 100), { ok: true });
  assert.equal(meter.tryTake(5, clock.now()), false, "the lease was the cost exactly");
  assert.deepEqual(await meter.take(4, clock.now() + 100), { ok: true });
  assert.equal(meter.tryTake(6, clock.now()), true, "a second's worth (10) was leased for 4");
  assert.equal(meter.tryTake(1, clock.now()), false);
  const refused = await meter.take(50, clock.now() + 50);
  assert.equal(refused.ok, false);
  meter.charge(20);
  clock.advanceSync(2000);
  assert.equal(meter.tryTake(1, clock.now()), false, "the leased rest expired");
});

Deno.test("KvCapacityStore.leaveAtMost: after the provider says 2 are left, a lease finds 2 at once and the next a token later", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  try {
    const limits: ServiceLimits = { rps: 1, burst: 10, maxConn: 1 };
    const store = new KvCapacityStore(kv, "s", limits, { instanceId: "i", clock });
    await store.leaveAtMost(2);
    const lease = await store.leaseTokens(3);
    const now = clock.now();
    assert.equal(lease.granted, 3);
    assert(lease.firstAt! <= now, "the first is free now");
    assert(lease.firstAt! + lease.spacingMs! <= now, "so is the second");
    assert(lease.firstAt! + 2 * lease.spacingMs! > now, "the third waits a token");
    await store.leaveAtMost(50);
    const next = await store.leaseTokens(1);
    assert(next.firstAt! > now, "never raised by a larger figure");
  } finally {
    kv.close();
  }
});

/** A key pacing whose limiters and ledgers live in memory, on `clock`. */
function memoryPacing(
  clock: FakeClock,
  o: Pick<KeyPacingOptions, "quota" | "dialect" | "rest" | "rates">,
): KeyPacing {
  return new KeyPacing({
    service: "s",
    dayResetMs: 0,
    clock,
    leaseMs: 2000,
    requestLimiter: (_id, l) =>
      new ScopeLimiter(l, { store: new MemoryCapacityStore(l, clock), clock }),
    tokenStore: (_id, l) => new MemoryCapacityStore(l, clock),
    ...o,
  });
}

Deno.test("KeyPacing: the provider's word paces a key on every instance within a refresh; a count at 0 rests it until the reset", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  const key: PooledKey = { id: "k_a", secret: "sk-a" };
  const rests: { until: number; reason: string }[] = [];
  const rates = new KeyRateStore(kv);
  const mk = () =>
    memoryPacing(clock, {
      quota: { rpm: 100 },
      dialect: "openai",
      rates,
      rest: (_k, until, reason) => rests.push({ until, reason }),
    });
  const one = mk(), two = mk();
  try {
    assert.equal(one.paceOf(key.id), undefined);
    one.room(key, clock.now(), 1);
    assert.equal(one.paceOf(key.id)?.rpm, 100, "the configured quota");
    one.observe(
      key,
      new Headers({
        "x-ratelimit-limit-requests": "30",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1.5s",
      }),
      clock.now(),
    );
    assert.equal(one.paceOf(key.id)?.rpm, 30, "never above what the provider states");
    assert.deepEqual(rests, [{ until: clock.now() + 1500, reason: "rate_limited" }]);
    one.observe(key, new Headers({ "x-ratelimit-limit-requests": "soon" }), clock.now());
    assert.equal(one.paceOf(key.id)?.rpm, 30, "a header that does not parse is ignored");
    await new Promise((r) => setTimeout(r, 20));
    await two.refresh([key]);
    assert.equal(two.paceOf(key.id)?.rpm, 30, "the other instance paces by it too");
    assert.equal(rests.length, 2, "and rests the key until the same reset");
    assert.equal(rests[1].until, rests[0].until);
  } finally {
    await one.close();
    await two.close();
    kv.close();
  }
});

Deno.test("KeyPacing: a day's count running low is paced to last until its reset", () => {
  const clock = new FakeClock();
  const key: PooledKey = { id: "k_a", secret: "sk-a" };
  const pacing = memoryPacing(clock, { quota: {}, dialect: "groq", rest: () => {} });
  const day = (remaining: number, reset: string) =>
    new Headers({
      "x-ratelimit-limit-requests": "1000",
      "x-ratelimit-remaining-requests": String(remaining),
      "x-ratelimit-reset-requests": reset,
    });
  pacing.observe(key, day(900, "1m0s"), clock.now());
  assert.equal(pacing.paceOf(key.id)?.rpm, 900, "900 left for a minute: 900 a minute");
  pacing.observe(key, day(10, "1h0m0s"), clock.now());
  assert.equal(pacing.paceOf(key.id)?.rpm, 10 / 60, "10 left for an hour: one every 6 min");
});

Deno.test("ProviderBackoff in KV: a provider pause never overwrites an admin's pause another instance wrote", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  try {
    const mk = (id: string) =>
      new ProviderBackoff({ service: "s", keys: 2, clock, kv, instanceId: id });
    const admin = mk("admin"), other = mk("other");
    await admin.adminPause();
    // The other instance has not read the admin's pause yet when its keys answer 429.
    other.answered("a", true, 1000, clock.now(), false);
    other.answered("b", true, 1000, clock.now(), false);
    await new Promise((r) => setTimeout(r, 20));
    await admin.refresh();
    assert.equal(pauseOf(admin)?.admin, true, "still the admin's pause");
    await other.refresh();
    assert.equal(pauseOf(other)?.admin, true, "and the other instance reads it");
  } finally {
    kv.close();
  }
});
