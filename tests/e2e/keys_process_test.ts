/**
 * Keys that pace themselves, across real gateway processes (`deno task
 * start`) against the mock provider on loopback: per-key quotas held by
 * three processes together, and the provider-wide pause.
 */
import assert from "node:assert/strict";
import { startMockUpstream } from "../support/mock_upstream.ts";
import { PASSWORD } from "../support/harness.ts";
import { type GatewayProcess, startGatewayProcess, stopProcesses } from "../support/process.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One chat completion through `proc` on `service`; its status. */
async function chat(proc: GatewayProcess, service: string): Promise<number> {
  const r = await fetch(`${proc.url}/${service}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "x" }] }),
  });
  await r.body?.cancel();
  return r.status;
}

/** Sends one request every `everyMs` for `forMs`, spread over `procs`; resolves with every status. */
async function openLoop(
  procs: GatewayProcess[],
  service: string,
  everyMs: number,
  forMs: number,
): Promise<number[]> {
  const answers: Promise<number>[] = [];
  const start = Date.now();
  for (let i = 0; Date.now() - start < forMs; i++) {
    answers.push(chat(procs[i % procs.length], service).catch(() => 0));
    await sleep(Math.max(0, start + (i + 1) * everyMs - Date.now()));
  }
  return await Promise.all(answers);
}

Deno.test("keyQuota.rpm = 20 on 3 keys, 3 processes, twice the load: the upstream answers zero 429s and serves at least 90% of 60 requests/min", async () => {
  const dir = await Deno.makeTempDir();
  // Each key a token bucket of 20 refilled at 20 a minute, as providers describe their limits.
  const mock = await startMockUpstream({
    latencyMs: 20,
    keyBucket: { capacity: 20, perMinute: 20 },
  });
  const config = {
    queueTimeoutMs: 20_000,
    queueLimit: 500,
    maxRetries: 0,
    services: {
      paced: {
        target: `${mock.url}/paced`,
        rps: 100,
        burst: 100,
        maxConn: 100,
        keyQuota: { rpm: 20 },
        rateLimitHeaders: "none",
      },
    },
  };
  const env = { PACED_API_KEYS: "k1,k2,k3" };
  const procs = await Promise.all(
    [1, 2, 3].map(() => startGatewayProcess({ kvPath: `${dir}/kv.sqlite3`, config, env })),
  );
  try {
    // Spend each key's first burst (the quota lets out 18 of the 20 at once), then measure the rate alone.
    await Promise.all(Array.from({ length: 60 }, (_, i) => chat(procs[i % 3], "paced")));
    const from = Date.now();
    // 60 requests/min allowed for the three keys; twice that is one request every 500 ms.
    const statuses = await openLoop(procs, "paced", 500, 40_000);
    const to = Date.now();
    const served = mock.received.filter((r) => r.at >= from + 5_000 && r.at < to).length;
    const expected = ((to - from - 5_000) / 60_000) * 60;
    console.log(
      `keyQuota.rpm: served ${served} of ${
        expected.toFixed(1)
      } allowed, ${mock.rateLimited} upstream 429s`,
    );
    assert.equal(mock.rateLimited, 0, "the upstream never had to say 429");
    assert(served >= 0.9 * expected, `served ${served} of ${expected.toFixed(1)} allowed`);
    assert(served <= expected + 3, `served ${served}: more than the quota allows`);
    assert(statuses.filter((s) => s === 200).length > 0);
    assert(statuses.every((s) => s === 200 || s === 429), `statuses ${[...new Set(statuses)]}`);
  } finally {
    await stopProcesses(procs);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("provider-wide 429 (the mock refuses every key for 5 s): at most keys + 1 upstream requests refused in those 5 s, then traffic resumes, and every client gets 200", async () => {
  const dir = await Deno.makeTempDir();
  const mock = await startMockUpstream({ latencyMs: 10 });
  const config = {
    queueTimeoutMs: 30_000,
    maxRetries: 2,
    services: { wide: { target: `${mock.url}/wide`, rps: 100, burst: 100, maxConn: 100 } },
  };
  const [proc] = [
    await startGatewayProcess({
      kvPath: `${dir}/kv.sqlite3`,
      config,
      env: { WIDE_API_KEYS: "k1,k2,k3" },
    }),
  ];
  try {
    const stop = AbortSignal.timeout(12_000);
    const statuses: number[] = [];
    // The refusal begins while no request is out: each client waits at the gate between two
    // requests, and the gate closes for a moment while the refusal is switched on. So the bound
    // below holds by construction, not by when the clients' requests happen to be sent: the three
    // clients' first requests go out together on the three keys (rotation) and are refused; each
    // retry is held while another of them is still out, and the second refusal (another key)
    // starts the pause; after the 2 s the provider names, one probe is refused; then the pause
    // runs past the 5 s. That is keys + 1.
    let gate: Promise<void> | undefined;
    let atGate = 0;
    let allAtGate = () => {};
    const client = async () => {
      while (!stop.aborted) {
        if (gate !== undefined) {
          if (++atGate === 3) allAtGate();
          await gate;
        }
        statuses.push(await chat(proc, "wide"));
      }
    };
    const clients = Promise.all([client(), client(), client()]);
    await sleep(1000);
    let open = () => {};
    const gathered = new Promise<void>((r) => allAtGate = r);
    gate = new Promise<void>((r) => open = r);
    await gathered;
    const from = Date.now();
    // The provider names 2 s, and still refuses when asked again then (as Gemini's short hints do).
    mock.options.refuseAll = { until: from + 5000, retryAfterSec: 2 };
    gate = undefined;
    open();
    await clients;
    // What the upstream sees in those 5 s: the requests that arrive in them (none was inside the
    // mock when the refusal began), and those refused (decided on arrival: the same).
    const during = mock.received.filter((r) => r.at >= from && r.at < from + 5000).length;
    const inside = mock.rateLimitedAt.filter((at) => at >= from && at < from + 5000).length -
      during;
    const after = mock.received.filter((r) => r.at >= from + 5000).length;
    const pauses = proc.stdout.events().filter((e) => e.event === "provider_backoff");
    console.log(
      `provider-wide 429: ${during} upstream requests in the 5 s (and ${inside} already inside when it began), ${after} after; pauses ${
        pauses.map((e) => `${e.ms} ms (${e.reason})`).join(", ")
      }`,
    );
    assert(during + inside <= 3 + 1, `${during} + ${inside} upstream requests refused in the 5 s`);
    assert(after >= 20, `traffic resumed: ${after} requests after the refusal`);
    assert(statuses.every((s) => s === 200), `statuses ${[...new Set(statuses)]}`);
    assert(pauses.length > 0, "the pause is logged");
  } finally {
    await stopProcesses([proc]);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});
