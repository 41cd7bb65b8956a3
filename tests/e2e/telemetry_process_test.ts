/**
 * OpenTelemetry from a real gateway process (`deno task start` with
 * `OTEL_DENO=true`) to a local OTLP/HTTP receiver started here: the GenAI
 * metrics and the attempt spans arrive, and no secret is in them.
 */
import assert from "node:assert/strict";
import { startMockUpstream } from "../support/mock_upstream.ts";
import { PASSWORD } from "../support/harness.ts";
import { gatewayPid, startGatewayProcess, stopProcesses } from "../support/process.ts";

/** An OTLP/HTTP receiver on loopback that keeps every export it is sent. */
function otlpReceiver() {
  const received: { path: string; body: string }[] = [];
  const ac = new AbortController();
  const receiver = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    async (req) => {
      received.push({ path: new URL(req.url).pathname, body: await req.text() });
      return new Response("{}", { headers: { "content-type": "application/json" } });
    },
  );
  return { received, receiver, ac };
}

Deno.test("OTEL_DENO=true: the GenAI metrics and a span per upstream attempt reach an OTLP/HTTP receiver, without secrets", async () => {
  const dir = await Deno.makeTempDir();
  const { received, receiver, ac } = otlpReceiver();
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
    // L7: a model the provider did not serve (a 400 here) is no metric label or span attribute.
    mock.script.set("*", [{ status: 400, body: '{"error":{"message":"no such model"}}' }]);
    const refused = await fetch(`${proc.url}/traced/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "client-chosen-model-x1", messages: [] }),
    });
    assert.equal(refused.status, 400);
    await refused.body?.cancel();
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
    assert(!all().includes("client-chosen-model-x1"), "only served models are recorded");
  } finally {
    await stopProcesses([proc]);
    await mock.close();
    ac.abort();
    await receiver.finished;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("M4: kvgate exports no credential: the generated password goes to the terminal only, keys never, ?key= is refused unless a service opts in; a key a client puts in a URL is recorded by Deno's own server span (as the README warns)", async () => {
  const dir = await Deno.makeTempDir();
  const { received, receiver, ac } = otlpReceiver();
  const mock = await startMockUpstream();
  const gem = { target: mock.url, style: "gemini", rps: 50, burst: 50 };
  const proc = await startGatewayProcess({
    kvPath: `${dir}/kv.sqlite3`,
    config: { services: { gemq: { ...gem, keyInQuery: true }, gemoff: gem } },
    env: {
      ACCESS_PASSWORD: "",
      GEMQ_API_KEYS: "g-otel-secret-key-1",
      GEMOFF_API_KEYS: "g-otel-secret-key-2",
      OTEL_DENO: "true",
      OTEL_SERVICE_NAME: "kvgate-test",
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.addr.port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    },
  });
  try {
    const generated = /kvg-[A-Za-z0-9_-]{20,}/.exec(proc.stderr.text())?.[0];
    assert(generated, "the generated password is on the terminal");
    const path = "/v1beta/models/gemini-pro:generateContent?alt=json";
    const post = (headers: Record<string, string> = {}) => ({
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: "{}",
    });
    for (const service of ["gemq", "gemoff"]) {
      const viaHeader: Response = await fetch(
        `${proc.url}/${service}${path}`,
        post({ "x-goog-api-key": generated }),
      );
      assert.equal(viaHeader.status, 200, `${service}: the header works everywhere`);
      await viaHeader.body?.cancel();
    }
    const off = await fetch(`${proc.url}/gemoff${path}&key=${generated}`, post());
    assert.equal(off.status, 401, "?key= is off by default");
    assert.match(await off.text(), /x-goog-api-key/);
    const on = await fetch(`${proc.url}/gemq${path}&key=${generated}`, post());
    assert.equal(on.status, 200, "?key= where the service opts in");
    await on.body?.cancel();
    assert(mock.received.every((r) => !r.search.includes("key=")), "no ?key= goes upstream");
    const all = () => received.map((r) => r.body).join("\n");
    for (
      let i = 0;
      i < 100 && !(all().includes("gemoff") && all().includes(`key=${generated}`));
      i++
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert(received.some((r) => r.path === "/v1/logs"), "console output was exported as logs");
    // What kvgate cannot stop: Deno's server span records the URL as the client sent it.
    const spans = received.filter((r) => r.path === "/v1/traces").map((r) => JSON.parse(r.body));
    const urls = spans.flatMap((t) =>
      t.resourceSpans.flatMap((rs: { scopeSpans: { spans: unknown[] }[] }) =>
        rs.scopeSpans.flatMap((ss) => ss.spans)
      )
    ).flatMap((
      span: { kind: number; attributes: { key: string; value: { stringValue?: string } }[] },
    ) =>
      span.attributes.filter((a) => a.key === "url.full").map((
        a,
      ) => [span.kind, a.value.stringValue!])
    ) as [number, string][];
    const withKey = urls.filter(([, url]) => url.includes(`key=${generated}`));
    assert(withKey.length >= 2, "the client's URL is on Deno's server spans");
    assert(
      withKey.every(([kind]) => kind === 2),
      "only on server spans (kind 2), never on kvgate's upstream calls",
    );
    const rest = all().replaceAll(`key=${generated}`, "");
    for (const secret of [generated, "g-otel-secret-key-1", "g-otel-secret-key-2"]) {
      assert(!rest.includes(secret), "a secret in what kvgate exported");
    }
  } finally {
    await stopProcesses([proc]);
    await mock.close();
    ac.abort();
    await receiver.finished;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("logs where Deno Deploy shows them: each request's line is its own console record, tied to the request's trace", async () => {
  const dir = await Deno.makeTempDir();
  const mock = await startMockUpstream();
  const proc = await startGatewayProcess({
    kvPath: `${dir}/kv.sqlite3`,
    config: { services: { traced: { target: `${mock.url}/traced`, rps: 50, burst: 50 } } },
    env: {
      TRACED_API_KEYS: "sk-log-one-secret",
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_PROTOCOL: "console",
    },
  });
  try {
    const r = await fetch(`${proc.url}/traced/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "m", messages: [] }),
    });
    assert.equal(r.status, 200);
    const id = r.headers.get("x-request-id")!;
    await r.body?.cancel();
    // Deno's console exporter prints (to stderr) a record as `LOG [INFO] <time> "<the line>"`, then its trace.
    const record = new RegExp(
      `LOG \\[INFO\\][^\\n]*\\{[^\\n]*"id":"${id}"[^\\n]*\\n"\\n[\\s\\S]*?trace: ([0-9a-f]{32}/[0-9a-f]{16})`,
    );
    let m: RegExpExecArray | null = null;
    for (let i = 0; i < 50 && !(m = record.exec(proc.stderr.text())); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(m, "the request's line is a log record of its own");
    const line = proc.stdout.events().find((e) => e.id === id)!;
    assert.equal(line.service, "traced");
    assert.equal(line.status, 200);
    // Spans go out in batches: SIGINT (Deploy's signal) ends the process, which exports the rest.
    Deno.kill(gatewayPid(proc), "SIGINT");
    await proc.child.status;
    await proc.drained;
    const server = new RegExp(`SPAN POST \\[${m[1]}\\] Server`);
    const all = () => proc.stdout.text() + proc.stderr.text();
    const spans = all().match(/SPAN [A-Z]+ \[[0-9a-f/]+\] \w+/g);
    assert.match(all(), server, `the request's own server span, among ${spans}`);
    assert.ok(!proc.stdout.text().includes("sk-log-one-secret"));
  } finally {
    await stopProcesses([proc]);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});
