/**
 * Shared-limit figures (issue 3): KV operations per request, accuracy
 * (worst window ÷ burst + rps·W), utilisation, stranded tokens and the
 * limiter's added wait, for 1, 2, 4 and 8 instances on one KV with 0, 10
 * and 100 ms of added KV latency. Run: `deno run -A --unstable-kv bench/shared_limits.ts`.
 *
 * @module
 */
import { runSharedLoad, worstWindowRatio } from "../tests/support/shared_load.ts";

const limits = { rps: 50, burst: 50, maxConn: 32 };
const leaseMs = 2000;
const durationMs = Number(Deno.args[0] ?? 4000);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
}

console.log(
  `rps ${limits.rps}, burst ${limits.burst}, maxConn ${limits.maxConn}, τ ${leaseMs} ms, ${durationMs} ms per row`,
);
console.log(
  "instances | KV ms | requests | KV ops/req | accuracy (1 s) | utilisation | stranded | wait p50 ms | wait p99 ms",
);
for (const latencyMs of [0, 10, 100]) {
  for (const instances of [1, 2, 4, 8]) {
    const r = await runSharedLoad({
      instances,
      limits,
      durationMs,
      workersPerInstance: Math.ceil(64 / instances),
      holdMs: 5,
      leaseMs,
      faults: { latencyMs, failing: false, ops: 0 },
    });
    const possible = limits.burst + (limits.rps * durationMs) / 1000;
    const stranded = r.limiters.reduce((n, l) => n + l.stats.tokensStranded, 0);
    const accuracy = r.sends.length
      ? Math.max(...[1000].map((w) => worstWindowRatio(r.sends, w, limits, 0)))
      : 0;
    console.log(
      [
        instances,
        latencyMs,
        r.sends.length,
        (r.kvOps / Math.max(1, r.sends.length)).toFixed(3),
        accuracy.toFixed(3),
        (r.sends.length / possible).toFixed(3),
        stranded,
        pct(r.waits, 50).toFixed(3),
        pct(r.waits, 99).toFixed(1),
      ].join(" | "),
    );
  }
}
