/**
 * The metrics and the status across two real gateway processes (`deno task
 * start`) on one KV file: what they count (each instance's counters, the
 * deployment's minute counts) agrees with what the mock upstream saw, and
 * neither holds a secret.
 */
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import { startMockUpstream } from "../support/mock_upstream.ts";
import { PASSWORD } from "../support/harness.ts";
import { startGatewayProcess, stopProcesses } from "../support/process.ts";

interface Family {
  name: string;
  metrics: { value?: string; labels?: Record<string, string> }[];
}

Deno.test("two processes: the sum of their metrics is what the upstream saw (requests and 429s), and the status shows every key", async () => {
  const dir = await Deno.makeTempDir();
  // Each key may make 2 requests a second: a burst of 12 earns 429s.
  const mock = await startMockUpstream({ perKeyRps: 2, retryAfterSec: 1 });
  const env = { SEEN_API_KEYS: "sk-seen-one-secret,sk-seen-two-secret" };
  const config = {
    maxRetries: 1,
    queueTimeoutMs: 10_000,
    services: { seen: { target: `${mock.url}/seen`, rps: 50, burst: 50, maxConn: 50 } },
  };
  const procs = await Promise.all(
    [1, 2].map(() => startGatewayProcess({ kvPath: `${dir}/kv.sqlite3`, config, env })),
  );
  try {
    const statuses = await Promise.all(Array.from({ length: 12 }, async (_, i) => {
      const r = await fetch(`${procs[i % 2].url}/seen/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "x" }] }),
      });
      await r.body?.cancel();
      return r.status;
    }));
    assert(mock.rateLimited > 0, "the burst earned 429s");
    let upstream = 0, refused = 0, answered = 0;
    for (const proc of procs) {
      const r = await fetch(`${proc.url}/_kvgate/metrics`, {
        headers: { authorization: `Bearer ${PASSWORD}` },
      });
      const text = await r.text();
      for (const secret of [PASSWORD, ...env.SEEN_API_KEYS.split(",")]) {
        assert(!text.includes(secret), "a secret in the metrics");
      }
      const families = new Map((parsePrometheus(text) as Family[]).map((f) => [f.name, f]));
      const series = (name: string) =>
        (families.get(name)?.metrics ?? []).filter((m) => m.labels?.service === "seen");
      for (const m of series("kvgate_upstream_responses_total")) {
        upstream += Number(m.value);
        if (m.labels?.status === "429") refused += Number(m.value);
      }
      for (const m of series("kvgate_requests_total")) answered += Number(m.value);
    }
    assert.equal(upstream, mock.received.length, "upstream answers counted by both");
    assert.equal(refused, mock.rateLimited, "429s counted by both");
    assert.equal(answered, statuses.length, "every client request counted once");
    // Each instance adds its minute counts in KV every 5 s; either then shows the deployment's.
    await new Promise((r) => setTimeout(r, 6000));
    const status = await fetch(`${procs[1].url}/_kvgate/status`, {
      headers: { authorization: `Bearer ${PASSWORD}` },
    });
    const text = await status.text();
    for (const secret of [PASSWORD, ...env.SEEN_API_KEYS.split(",")]) {
      assert(!text.includes(secret), "a secret in the status");
    }
    const s = JSON.parse(text);
    assert.equal(s.services.seen.keys.length, 2);
    assert.equal(s.instances.length, 2, "both instances seen");
    const five = s.services.seen.lastFiveMinutes;
    assert.equal(five.requests, statuses.length, "both instances' requests in the last 5 minutes");
    assert.equal(five.upstream429, mock.rateLimited, "and the upstream's 429s");
    assert(s.services.seen.perMinute.length >= 1);
  } finally {
    await stopProcesses(procs);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});
