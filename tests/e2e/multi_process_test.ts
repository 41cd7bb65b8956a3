/**
 * Several real gateway processes (`main.ts`, as `deno task start` runs it)
 * sharing one KV file, driven by concurrent clients, against one mock
 * upstream that counts arrivals and concurrency.
 */
import assert from "node:assert/strict";
import { startMockUpstream } from "../support/mock_upstream.ts";
import { worstWindowRatio } from "../support/shared_load.ts";
import { chatBody, PASSWORD } from "../support/harness.ts";
import { type GatewayProcess, startGatewayProcess } from "../support/process.ts";

type Proc = GatewayProcess;

/** Started as `deno run -A main.ts`: some tests SIGKILL it, which a task cannot forward. */
const startProcess = (kvPath: string, config: unknown) =>
  startGatewayProcess({ kvPath, config, how: "run" });

async function stopAll(procs: Proc[]): Promise<void> {
  for (const p of procs) {
    try {
      p.child.kill("SIGKILL");
    } catch { /* already gone */ }
    await p.child.status;
    await p.drained;
  }
}

async function drive(procs: Proc[], durationMs: number, perProcess: number) {
  const end = Date.now() + durationMs;
  let statuses = 0;
  const client = async (p: Proc) => {
    while (Date.now() < end) {
      try {
        const r = await fetch(`${p.url}/openai/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
          body: chatBody(),
          signal: AbortSignal.timeout(Math.max(1, end - Date.now() + 2000)),
        });
        await r.body?.cancel();
        statuses++;
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  await Promise.all(procs.flatMap((p) => Array.from({ length: perProcess }, () => client(p))));
  return statuses;
}

const limits = { rps: 10, burst: 5, maxConn: 4 };

for (const mode of ["shared", "local"] as const) {
  Deno.test(`3 gateway processes on one KV file (${mode}): ${mode === "shared" ? "the limits hold for all" : "the baseline sends about 3× the limit"}`, async () => {
    const dir = await Deno.makeTempDir();
    const mock = await startMockUpstream({ latencyMs: 100, perKeyRps: 10, retryAfterSec: 1 });
    const config = {
      limitMode: mode,
      leaseMs: 1000,
      slotTtlMs: 3000,
      queueTimeoutMs: 10_000,
      maxRetries: 0,
      services: { openai: { target: mock.url, ...limits } },
    };
    const procs = await Promise.all([1, 2, 3].map(() => startProcess(`${dir}/kv.sqlite3`, config)));
    try {
      const t0 = Date.now();
      await drive(procs, 4000, 6);
      const sends = mock.received.map((r) => r.at - t0).sort((a, b) => a - b);
      // The local baseline leases nothing: its own envelope has τ = 0.
      const ratio = worstWindowRatio(sends, 2000, limits, mode === "shared" ? config.leaseMs : 0);
      const arrivals = mock.received.length;
      if (mode === "shared") {
        assert(ratio <= 1, `worst 2 s window: ${ratio.toFixed(2)} of burst + rps·(W + τ)`);
        assert(mock.maxInFlight <= limits.maxConn, `upstream saw ${mock.maxInFlight} in flight`);
        assert(mock.rateLimited === 0, `the upstream answered ${mock.rateLimited} 429s`);
        assert(
          arrivals >= 0.6 * (limits.burst + limits.rps * 4),
          `utilisation: ${arrivals} requests`,
        );
      } else {
        assert(ratio > 1.8, `baseline: worst window ${ratio.toFixed(2)}× the envelope`);
        assert(mock.maxInFlight > limits.maxConn, `baseline exceeds maxConn (${mock.maxInFlight})`);
        assert(mock.rateLimited > 0, "and the upstream answers 429s");
      }
    } finally {
      await stopAll(procs);
      await mock.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("a killed gateway process's in-flight slots come back within the slot TTL", async () => {
  const dir = await Deno.makeTempDir();
  const mock = await startMockUpstream({ chunkDelayMs: 1000, chunks: 60 });
  const config = {
    slotTtlMs: 2000,
    services: { openai: { target: mock.url, rps: 100, burst: 100, maxConn: 2 } },
  };
  const [doomed, survivor] = await Promise.all(
    [1, 2].map(() => startProcess(`${dir}/kv.sqlite3`, config)),
  );
  try {
    // Two long streams hold both slots through the doomed process.
    const streams = [1, 2].map(() =>
      fetch(`${doomed.url}/openai/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
        body: chatBody({ stream: true }),
      }).then((r) => r.body!.getReader().read()).catch(() => {})
    );
    await Promise.all(streams);
    doomed.child.kill("SIGKILL");
    await doomed.child.status;
    const t0 = Date.now();
    const r = await fetch(`${survivor.url}/openai/v1/models`, {
      headers: { authorization: `Bearer ${PASSWORD}` },
    });
    await r.body?.cancel();
    const waited = Date.now() - t0;
    assert(r.status === 200, `status ${r.status}`);
    assert(
      waited >= 500 && waited <= 2000 + 1500,
      `the survivor got a slot after ${waited} ms (TTL 2000)`,
    );
  } finally {
    await stopAll([doomed, survivor]);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIGTERM: a stopping gateway process hands back its unused tokens, and exits within 5 s", async () => {
  const dir = await Deno.makeTempDir();
  const mock = await startMockUpstream({});
  // A slow refill (one token per 2 s) makes every token handed back visible.
  const config = {
    leaseMs: 10_000,
    services: { openai: { target: mock.url, rps: 0.5, burst: 10, maxConn: 10 } },
  };
  const [stopping, other] = await Promise.all(
    [1, 2].map(() => startProcess(`${dir}/kv.sqlite3`, config)),
  );
  const post = (p: Proc) =>
    fetch(`${p.url}/openai/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
      body: chatBody(),
      signal: AbortSignal.timeout(8000),
    }).then(async (r) => {
      await r.body?.cancel();
      return r.status;
    });
  try {
    // Three requests; with that demand seen, the process leases a few tokens ahead.
    assert((await Promise.all([1, 2, 3].map(() => post(stopping)))).every((s) => s === 200));
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    stopping.child.kill("SIGTERM");
    const status = await stopping.child.status;
    assert(
      status.success && Date.now() - t0 < 5000,
      `exit ${status.code} after ${Date.now() - t0} ms`,
    );
    // The rest of the burst, 10 − 3, must be there at once for the other process.
    const t1 = Date.now();
    const statuses = await Promise.all(Array.from({ length: 7 }, () => post(other)));
    const took = Date.now() - t1;
    assert(statuses.every((s) => s === 200), `statuses ${statuses}`);
    assert(took < 1500, `the last of seven took ${took} ms: leased tokens were not handed back`);
  } finally {
    await stopAll([stopping, other]);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});
