import assert from "node:assert/strict";
import { withMemoryKv } from "../support/kv.ts";
import { runSharedLoad, worstWindowRatio } from "../support/shared_load.ts";
import { KvCapacityStore, ScopeLimiter, systemClock } from "../../limiter/mod.ts";

const limits = { rps: 20, burst: 10, maxConn: 6 };
const leaseMs = 500;

// The slowest KV runs for the 30 s: start-up (two 100 ms round trips
// before the first token) would weigh too much in 3 s.
for (const [latencyMs, durationMs] of [[0, 3000], [20, 3000], [100, 30_000]]) {
  Deno.test(`shared limits, 4 instances, KV latency ${latencyMs} ms, ${durationMs / 1000} s: rate envelope, utilisation ≥ 90% and in-flight cap hold`, async () => {
    const r = await runSharedLoad({
      instances: 4,
      limits,
      durationMs,
      workersPerInstance: 6,
      holdMs: 20,
      leaseMs,
      faults: { latencyMs, failing: false, ops: 0 },
    });
    for (const w of [250, 1000, durationMs]) {
      const ratio = worstWindowRatio(r.sends, w, limits, leaseMs);
      assert(ratio <= 1, `window ${w} ms: ${ratio.toFixed(3)} of burst + rps·(W + τ)`);
    }
    assert(r.maxInFlight <= limits.maxConn, `in flight ${r.maxInFlight} > maxConn`);
    const possible = limits.burst + (limits.rps * durationMs) / 1000;
    assert(r.sends.length >= 0.9 * possible, `utilisation ${r.sends.length}/${possible}`);
  });
}

Deno.test("the local-only baseline lets 4 instances send about 4 times the limit", async () => {
  const r = await runSharedLoad({
    instances: 4,
    limits,
    durationMs: 1500,
    workersPerInstance: 6,
    holdMs: 20,
    mode: "local",
    faults: { latencyMs: 0, failing: false, ops: 0 },
  });
  const ratio = worstWindowRatio(r.sends, 1500, limits, 0);
  assert(ratio > 2.5, `baseline sent ${ratio.toFixed(2)}× the envelope`);
  assert(r.maxInFlight > limits.maxConn, "and more in flight than maxConn");
});

Deno.test("KV failing: instances degrade to their local share (never unlimited), log once, and recover", async () => {
  const faults = { latencyMs: 0, failing: false, ops: 0 };
  const r = await runSharedLoad({
    instances: 4,
    limits,
    durationMs: 3000,
    workersPerInstance: 4,
    holdMs: 10,
    leaseMs,
    faults,
    during: async () => {
      await new Promise((r) => setTimeout(r, 1000));
      faults.failing = true;
      await new Promise((r) => setTimeout(r, 1000));
      faults.failing = false;
    },
  });
  const degradedSends = r.sends.filter((t) => t >= 1200 && t < 2000).length;
  // Local share: each instance rps/4 (and burst/4): together about rps over 0.8 s plus small bursts.
  const cap = limits.burst + limits.rps * (0.8 + leaseMs / 1000);
  assert(degradedSends > 0, "still serving while KV fails");
  assert(degradedSends <= cap, `degraded sends ${degradedSends} > ${cap}`);
  const degradedLogs = r.events.filter((e) => e.endsWith("kv_degraded"));
  assert(
    degradedLogs.length >= 1 && degradedLogs.length <= 4,
    `logged once per instance (${degradedLogs})`,
  );
  assert.deepEqual(
    r.events.filter((e) => e.endsWith("kv_recovered")).length,
    degradedLogs.length,
    "every degraded instance recovered",
  );
  assert(r.sends.filter((t) => t >= 2300).length > 0, "serving after recovery");
});

Deno.test("a killed instance's slots come back within the slot TTL", async () => {
  await withMemoryKv(async (kv) => {
    const l = { rps: 1000, burst: 1000, maxConn: 2 };
    const ttl = 600;
    const make = (id: string) =>
      new ScopeLimiter(l, {
        store: new KvCapacityStore(kv, "svc", l, {
          instanceId: id,
          clock: systemClock,
          slotTtlMs: ttl,
        }),
        clock: systemClock,
        slotTtlMs: ttl,
      });
    const doomed = make("doomed");
    const far = Date.now() + 10_000;
    const a = await doomed.acquireSlot({ deadline: far });
    const b = await doomed.acquireSlot({ deadline: far });
    assert(a.ok && b.ok);
    // "Kill" it: no release, no heartbeat, no close.
    const survivor = make("survivor");
    const t0 = Date.now();
    const s = await survivor.acquireSlot({ deadline: far });
    const waited = Date.now() - t0;
    assert(s.ok, "got a slot");
    assert(
      waited >= ttl * 0.5 && waited <= ttl + 500,
      `slot came back after ${waited} ms (TTL ${ttl})`,
    );
    s.release();
    await survivor.close();
  });
});
