/**
 * OpenTelemetry from a real gateway process (`deno task start` with
 * `OTEL_DENO=true`) to a local OTLP/HTTP receiver started here: the GenAI
 * metrics and the attempt spans arrive, and no secret is in them.
 */
import assert from "node:assert/strict";
import { startMockUpstream } from "./support/mock_upstream.ts";
import { PASSWORD } from "./support/harness.ts";
import { startGatewayProcess, stopProcesses } from "./support/process.ts";

Deno.test("OTEL_DENO=true: the GenAI metrics and a span per upstream attempt reach an OTLP/HTTP receiver, without secrets", async () => {
  const dir = await Deno.makeTempDir();
  const received: { path: string; body: string }[] = [];
  const ac = new AbortController();
  const receiver = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    async (req) => {
      received.push({ path: new URL(req.url).pathname, body: await req.text() });
      return new Response("{}", { headers: { "content-type": "application/json" } });
    },
  );
  const mock = await startMockUpstream();
  const keys = "sk-otel-one-secret,sk-otel-two-secret";
  const proc = await startGatewayProcess({
    kvPath: `${dir}/kv.sqlite3`,
    config: { services: { traced: { target: `${mock.url}/traced`, rps: 50, burst: 50 } } },
    env: {
      TRACED_API_KEYS: keys,
      OTEL_DENO: "true",
      OTEL_SERVICE_NAME: "kvgate-test",
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.addr.port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_METRIC_EXPORT_INTERVAL: "500",
    },
  });
  try {
    for (let i = 0; i < 4; i++) {
      const r = await fetch(`${proc.url}/traced/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "mock-model", messages: [{ role: "user", content: "x" }] }),
      });
      assert.equal(r.status, 200);
      await r.body?.cancel();
    }
    const all = () => received.map((r) => r.body).join("\n");
    const wanted = [
      "gen_ai.client.token.usage",
      "gen_ai.server.request.duration",
      "gen_ai.server.time_to_first_token",
      "gen_ai.provider.name",
      "gen_ai.request.model",
      "kvgate.key.id",
    ];
    for (let i = 0; i < 100 && !wanted.every((w) => all().includes(w)); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const w of wanted) assert(all().includes(w), `${w} exported`);
    assert(received.some((r) => r.path === "/v1/metrics"), "metrics posted");
    assert(received.some((r) => r.path === "/v1/traces"), "spans posted");
    for (const secret of [PASSWORD, ...keys.split(",")]) {
      assert(!all().includes(secret), "a secret in the exported telemetry");
    }
  } finally {
    await stopProcesses([proc]);
    await mock.close();
    ac.abort();
    await receiver.finished;
    await Deno.remove(dir, { recursive: true });
  }
});
