/**
 * Shared-limit figures (issue 3), for 1, 2, 4 and 8 instances on one KV
 * with 0, 10 and 100 ms added to every KV call, for the GCRA ledger and
 * the compare-and-set bucket side by side:
 *
 * - saturating load: KV operations per request, accuracy (worst 1 s window
 *   ÷ burst + rps·1 s), utilisation (sent ÷ burst + rps·duration), stranded
 *   tokens;
 * - open-loop load at 60% of rps: KV operations per request and the
 *   limiter's added latency, p50 and p99, for requests served from the
 *   local stock (fast path) and for those that waited on KV (refill).
 *
 * Run: `deno run -A --unstable-kv bench/shared_limits.ts [ms per row]`.
 *
 * @module
 */
import { runSharedLoad, worstWindowRatio } from "../tests/support/shared_load.ts";

const durationMs = Number(Deno.args[0] ?? 3000);
const leaseMs = 2000;
const algorithms = ["ledger", "compare_and_set"] as const;

function pct(xs: number[], p: number): string {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(3) : "-";
}

async function saturated(
  rps: number,
  instances: number,
  latencyMs: number,
  tokens: typeof algorithms[number],
) {
  const limits = { rps, burst: rps, maxConn: 32 };
  const r = await runSharedLoad({
    instances,
    limits,
    durationMs,
    workersPerInstance: Math.ceil(64 / instances),
    holdMs: 5,
    leaseMs,
    tokens,
    faults: { latencyMs, failing: false, ops: 0 },
  });
  const possible = limits.burst + (limits.rps * durationMs) / 1000;
  const stranded = r.limiters.reduce((n, l) => n + l.stats.tokensStranded, 0);
  const accuracy = r.sends.length ? worstWindowRatio(r.sends, 1000, limits, 0) : 0;
  const envelope = r.sends.length ? worstWindowRatio(r.sends, 1000, limits, leaseMs) : 0;
  return [
    tokens,
    rps,
    instances,
    latencyMs,
    r.sends.length,
    r.steadyOpsPerSend.toFixed(3),
    accuracy.toFixed(3),
    envelope.toFixed(3),
    (r.sends.length / possible).toFixed(3),
    stranded,
  ].join(" | ");
}

async function openLoop(instances: number, latencyMs: number, tokens: typeof algorithms[number]) {
  const limits = { rps: 50, burst: 50, maxConn: 32 };
  const r = await runSharedLoad({
    instances,
    limits,
    durationMs,
    workersPerInstance: 0,
    offeredRps: 30,
    holdMs: 5,
    leaseMs,
    tokens,
    faults: { latencyMs, failing: false, ops: 0 },
  });
  return [
    tokens,
    instances,
    latencyMs,
    r.sends.length,
    r.steadyOpsPerSend.toFixed(3),
    (r.fastWaits.length / Math.max(1, r.waits.length)).toFixed(2),
    pct(r.fastWaits, 50),
    pct(r.fastWaits, 99),
    pct(r.slowWaits, 50),
    pct(r.slowWaits, 99),
  ].join(" | ");
}

console.log(
  `## Saturating load: 64 workers, each send held 5 ms; burst = rps, maxConn 32, τ ${leaseMs} ms, ${durationMs} ms per row`,
);
console.log(
  "tokens | rps | instances | KV ms | requests | KV ops/req after 1 s | accuracy (1 s) | of guarantee | utilisation | stranded",
);
for (const latencyMs of [0, 10, 100]) {
  for (const instances of [1, 2, 4, 8]) {
    for (const tokens of algorithms) console.log(await saturated(50, instances, latencyMs, tokens));
  }
}
for (const rps of [5, 200]) {
  for (const tokens of algorithms) console.log(await saturated(rps, 4, 10, tokens));
}

console.log(
  `\n## Open loop: 30 requests/s offered (60% of rps 50), ${durationMs} ms per row; waits in ms`,
);
console.log(
  "tokens | instances | KV ms | requests | KV ops/req after 1 s | fast share | fast p50 | fast p99 | refill p50 | refill p99",
);
for (const latencyMs of [0, 10, 100]) {
  for (const instances of [1, 2, 4, 8]) {
    for (const tokens of algorithms) console.log(await openLoop(instances, latencyMs, tokens));
  }
}
