/**
 * kvgate across "regions" on KV Connect (issue 22): three instances started
 * as Deno Deploy starts them, one 20 ms from KV and two 120 ms from it (the
 * KV Connect test server's latency per access token).
 *
 * - Fast path: steady requests (open loop, 20 rps in all, spread over the
 *   three) to a service with headroom. What kvgate adds is each request's
 *   time through the gateway minus the upstream's own time for the same
 *   request (the mock's answer delay, measured in the same run by sending
 *   the same requests straight to the mock): p50 and p90, per region.
 * - KV calls per request over the same window, heartbeats and every
 *   background call included (the server counts them by access token).
 *
 * Run: `deno task bench:regions [seconds]` (default 20 s of load);
 * `BENCH_LEASE_MS` sets the lease lifetime (default 2000).
 *
 * @module
 */
import { startKvConnect } from "../tests/support/kv_connect.ts";
import { startMockUpstream } from "../tests/support/mock_upstream.ts";
import { PASSWORD } from "../tests/support/harness.ts";
import { DEPLOY_ENV, startGatewayProcess, stopProcesses } from "../tests/support/process.ts";

const seconds = Number(Deno.args[0] ?? 20);
const RATE = 20;
const REGIONS = [20, 120, 120];

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function timed(url: string, headers: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(url, {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
  });
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`status ${r.status}`);
  return performance.now() - t0;
}

const server = await startKvConnect();
const mock = await startMockUpstream({ latencyMs: 50 });
// BENCH_LEASE_MS: the lease lifetime τ (default 2000): longer leases, fewer KV calls, a wider envelope.
const leaseMs = Number(Deno.env.get("BENCH_LEASE_MS") ?? 2000);
const config = {
  leaseMs,
  services: { openai: { target: mock.url, rps: 100, burst: 100, maxConn: 50 } },
};
const tokens = REGIONS.map((ms, i) => `bench-region-${i}-${ms}ms`);
for (const [i, ms] of REGIONS.entries()) await server.setLatency(ms, tokens[i]);
const procs = await Promise.all(REGIONS.map((_, i) =>
  startGatewayProcess({
    how: "deploy",
    kvPath: server.url,
    config,
    env: { ...DEPLOY_ENV, DENO_KV_ACCESS_TOKEN: tokens[i] },
  })
));
try {
  const auth = { authorization: `Bearer ${PASSWORD}` };
  // The first WARM_MS of load are the cold start (leases, slots and key health
  // read for the first time, three instances contending): reported apart.
  const WARM_MS = 3000;
  const through: number[][] = REGIONS.map(() => []);
  const direct: number[] = [];
  const slow: string[] = [];
  const sends: Promise<void>[] = [];
  const cold: number[] = [];
  const started = performance.now();
  const total = (seconds + WARM_MS / 1000) * RATE;
  for (let n = 0; n < total; n++) {
    const at = started + (n * 1000) / RATE;
    await new Promise((r) => setTimeout(r, Math.max(0, at - performance.now())));
    if (n === WARM_MS * RATE / 1000) await server.resetCalls();
    const warm = n >= WARM_MS * RATE / 1000;
    const i = n % procs.length;
    sends.push(
      timed(`${procs[i].url}/openai/v1/chat/completions`, auth).then((ms) => {
        if (!warm) return void cold.push(ms);
        through[i].push(ms);
        if (ms > 150) {
          slow.push(
            `#${n} (instance ${i}, at ${(at - started).toFixed(0)} ms): ${ms.toFixed(0)} ms`,
          );
        }
      }),
    );
    // The same request straight to the mock: the upstream's own time, in the same run.
    if (n % 3 === 0) {
      sends.push(timed(`${mock.url}/v1/chat/completions`, auth).then((ms) => void direct.push(ms)));
    }
  }
  await Promise.all(sends);
  const calls = await server.calls();
  const requests = seconds * RATE;
  console.log(
    `cold start (first ${WARM_MS} ms of load): p50 ${pct(cold, 50).toFixed(0)} ms, max ${
      Math.max(...cold).toFixed(0)
    } ms through the gateway`,
  );
  const upstream50 = pct(direct, 50), upstream90 = pct(direct, 90);
  console.log(
    `${requests} requests at ${RATE} rps over ${REGIONS.length} instances (KV ${
      REGIONS.join("/")
    } ms, leaseMs ${leaseMs})`,
  );
  console.log(`upstream alone: p50 ${upstream50.toFixed(1)} ms, p90 ${upstream90.toFixed(1)} ms`);
  for (const [i, ms] of REGIONS.entries()) {
    const p50 = pct(through[i], 50) - upstream50, p90 = pct(through[i], 90) - upstream90;
    console.log(
      `instance ${i} (KV ${ms} ms): kvgate adds p50 ${p50.toFixed(1)} ms, p90 ${
        p90.toFixed(1)
      } ms; KV calls ${calls.byToken[tokens[i]] ?? 0}`,
    );
  }
  console.log(
    `steady requests that took over 150 ms: ${slow.length}${slow.length ? ": " : ""}${
      slow.slice(0, 12).join(", ")
    }`,
  );
  console.log(
    `KV calls per request: ${(calls.total / requests).toFixed(3)} (${calls.total} calls: ${
      JSON.stringify(calls.byKind)
    })`,
  );
  const byKey = Object.entries(calls.byKey).sort((a, b) => b[1] - a[1]);
  console.log(
    `  per request, by call and first key: ${
      byKey.map(([k, n]) => `${k} ${(n / requests).toFixed(3)}`).join(", ")
    }`,
  );
} finally {
  await stopProcesses(procs);
  await mock.close();
  await server.close();
}
