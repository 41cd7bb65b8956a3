/**
 * kvgate as Deno Deploy runs it (issue 22): `deno run -A main.ts` with no
 * other flag (only deno.json applies), Deploy's variables, no PORT of its
 * own choosing, and an isolate's memory.
 */
import assert from "node:assert/strict";
import { startMockUpstream } from "./support/mock_upstream.ts";
import { PASSWORD } from "./support/harness.ts";
import { startGatewayProcess, stopProcesses } from "./support/process.ts";

const DEPLOY_ENV = {
  DENO_DEPLOY: "true",
  DENO_DEPLOYMENT_ID: "test-deployment",
  DENO_TIMELINE: "production",
};

for (const store of ["the default store (no KV_PATH)", "a KV file"]) {
  Deno.test(`started as Deno Deploy starts it (deno run -A main.ts, no flag more, Deploy's variables), it serves on ${store}`, async () => {
    const dir = await Deno.makeTempDir();
    const mock = await startMockUpstream();
    const defaultStore = store.startsWith("the default");
    const gw = await startGatewayProcess({
      how: "deploy",
      kvPath: `${dir}/kv.sqlite3`,
      config: { services: { openai: { target: mock.url } } },
      // An empty KV_PATH on Deploy is Deno.openKv() with no path: the platform's store.
      env: defaultStore ? { ...DEPLOY_ENV, KV_PATH: "" } : DEPLOY_ENV,
    });
    try {
      const r = await fetch(`${gw.url}/openai/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "m", messages: [] }),
      });
      assert.equal(r.status, 200);
      await r.body?.cancel();
      const start = gw.stdout.events().find((e) => e.event === "start");
      const expected = Deno.env.get("KVGATE_TEST_DENO_VERSION") ?? Deno.version.deno;
      assert.equal(start?.deno, expected, "the start line names the Deno it runs on");
      assert.equal(start?.kv, defaultStore ? "deploy" : `${dir}/kv.sqlite3`);
    } finally {
      await stopProcesses([gw]);
      await mock.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("a memory budget for bodies: 40 concurrent 8 MiB bodies behind maxConn 1 in a 512 MB heap: the process lives, each gets 200 or 429 gateway_busy", async () => {
  const dir = await Deno.makeTempDir();
  const mock = await startMockUpstream({ latencyMs: 300 });
  const gw = await startGatewayProcess({
    how: "deploy",
    denoFlags: ["--v8-flags=--max-old-space-size=512"],
    kvPath: `${dir}/kv.sqlite3`,
    config: {
      queueTimeoutMs: 60_000,
      services: { openai: { target: mock.url, rps: 100, burst: 100, maxConn: 1 } },
    },
    env: DEPLOY_ENV,
  });
  try {
    const body = JSON.stringify({
      model: "m",
      messages: [{ role: "user", content: "x".repeat(8 * 1024 * 1024) }],
    });
    const answers = await Promise.all(Array.from({ length: 40 }, async () => {
      const r = await fetch(`${gw.url}/openai/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
        body,
      }).catch((e) => e as Error);
      if (r instanceof Error) return `error: ${r.message}`;
      const text = await r.text();
      return r.status === 200 ? "200" : `${r.status} ${JSON.parse(text).error?.code}`;
    }));
    const counts = answers.reduce<Record<string, number>>(
      (m, a) => ({ ...m, [a]: (m[a] ?? 0) + 1 }),
      {},
    );
    console.log(`40 × 8 MiB behind maxConn 1: ${JSON.stringify(counts)}`);
    assert.deepEqual(
      Object.keys(counts).filter((k) => k !== "200" && k !== "429 gateway_busy"),
      [],
    );
    assert.ok((counts["429 gateway_busy"] ?? 0) > 0, "the budget refused some");
    const home = await fetch(`${gw.url}/`);
    assert.equal(home.status, 200, "the process lives");
    await home.body?.cancel();
  } finally {
    await stopProcesses([gw]);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});
