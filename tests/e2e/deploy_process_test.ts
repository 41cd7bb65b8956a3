/**
 * kvgate as Deno Deploy runs it (issue 22): `deno run -A main.ts` with no
 * other flag (only deno.json applies), Deploy's variables, no PORT of its
 * own choosing, and an isolate's memory.
 */
import assert from "node:assert/strict";
import { startMockUpstream } from "../support/mock_upstream.ts";
import { PASSWORD } from "../support/harness.ts";
import {
  DEPLOY_ENV,
  type GatewayProcess,
  startGatewayProcess,
  stopProcesses,
} from "../support/process.ts";
import {
  type KvConnectServer,
  kvConnectUnavailable,
  startKvConnect,
} from "../support/kv_connect.ts";

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

const kvConnectMissing = await kvConnectUnavailable();
if (kvConnectMissing) console.log(`KV Connect tests skipped: ${kvConnectMissing}`);

/** A gateway started as Deploy on the KV Connect server, its calls `latencyMs` away. */
async function onKvConnect(
  server: KvConnectServer,
  latencyMs: number,
  config: unknown,
): Promise<{ gw: GatewayProcess; spawnedAt: number; token: string }> {
  const token = `region-${latencyMs}-${crypto.randomUUID()}`;
  await server.setLatency(latencyMs, token);
  const spawnedAt = performance.now();
  const gw = await startGatewayProcess({
    how: "deploy",
    kvPath: server.url,
    config,
    env: { ...DEPLOY_ENV, DENO_KV_ACCESS_TOKEN: token },
  });
  return { gw, spawnedAt, token };
}

const chat = (url: string, model = "m", stream = false) =>
  fetch(`${url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
    body: JSON.stringify({ model, stream, messages: [{ role: "user", content: "hi" }] }),
  });

Deno.test({
  name:
    "started as Deploy on KV Connect: it serves first — the first 200 on / with KV 400 ms away comes at most 0.3 s after it does with KV at 0 ms — and a request that arrives meanwhile is answered",
  ignore: kvConnectMissing !== null,
  async fn() {
    const server = await startKvConnect();
    const mock = await startMockUpstream();
    const config = { services: { openai: { target: mock.url } } };
    const best: Record<number, number> = {};
    try {
      for (const latencyMs of [0, 400, 0, 400]) {
        const { gw, spawnedAt } = await onKvConnect(server, latencyMs, config);
        try {
          const home = await fetch(`${gw.url}/`);
          const took = performance.now() - spawnedAt;
          assert.equal(home.status, 200);
          await home.body?.cancel();
          best[latencyMs] = Math.min(best[latencyMs] ?? Infinity, took);
          // Sent before KV has answered (at 400 ms it takes some round trips): answered all the same.
          const r = await chat(gw.url);
          assert.equal(r.status, 200, `proxied with KV ${latencyMs} ms away`);
          await r.body?.cancel();
        } finally {
          await stopProcesses([gw]);
        }
      }
      console.log(
        `time from spawn to the first 200 on /: KV at 0 ms ${best[0].toFixed(0)} ms, at 400 ms ${
          best[400].toFixed(0)
        } ms`,
      );
      assert.ok(best[400] <= best[0] + 300, `${best[400]} ms against ${best[0]} ms`);
    } finally {
      await mock.close();
      await server.close();
    }
  },
});

Deno.test({
  name:
    "SIGINT on KV Connect at 0, 100 and 250 ms per call with a 30 s stream open: exit 0 within 4.9 s, and a stream that could finish did",
  ignore: kvConnectMissing !== null,
  async fn() {
    const server = await startKvConnect();
    // 300 chunks 100 ms apart: 30 s. A model "chunks-10" asks for 1 s.
    const mock = await startMockUpstream({ chunks: 300, chunkDelayMs: 100 });
    const config = { services: { openai: { target: mock.url, rps: 100, burst: 100, maxConn: 4 } } };
    try {
      for (const latencyMs of [0, 100, 250]) {
        const { gw } = await onKvConnect(server, latencyMs, config);
        try {
          const long = await chat(gw.url, "m", true);
          const short = await chat(gw.url, "chunks-10", true);
          assert.equal(long.status, 200);
          assert.equal(short.status, 200);
          const shortText = short.text();
          const longText = long.text().catch((e) => `cut: ${e}`);
          const t0 = performance.now();
          gw.child.kill("SIGINT");
          const status = await gw.child.status;
          const exitedAfter = performance.now() - t0;
          console.log(`KV at ${latencyMs} ms: SIGINT → exit ${exitedAfter.toFixed(0)} ms`);
          assert.equal(status.code, 0);
          assert.ok(exitedAfter <= 4900, `exited ${exitedAfter} ms after SIGINT`);
          assert.ok(
            (await shortText).endsWith("data: [DONE]\n\n"),
            "the 1 s stream finished whole",
          );
          assert.ok(!(await longText).endsWith("data: [DONE]\n\n"), "the 30 s one could not");
        } finally {
          await stopProcesses([gw]);
        }
      }
    } finally {
      await mock.close();
      await server.close();
    }
  },
});

Deno.test({
  name:
    "an idle instance on KV Connect makes no KV call once idleAfterMs has passed, and the next request wakes it",
  ignore: kvConnectMissing !== null,
  async fn() {
    const server = await startKvConnect();
    const mock = await startMockUpstream();
    const config = {
      idleAfterMs: 2000,
      teams: { t: { token: "team-t-token-0123456789" } },
      services: { openai: { target: mock.url } },
    };
    const { gw, token } = await onKvConnect(server, 100, config);
    try {
      const r = await chat(gw.url);
      assert.equal(r.status, 200);
      await r.body?.cancel();
      await new Promise((r) => setTimeout(r, 3000));
      const before = (await server.calls()).byToken[token] ?? 0;
      await new Promise((r) => setTimeout(r, 10_000));
      const idle = ((await server.calls()).byToken[token] ?? 0) - before;
      console.log(`idle: ${idle} KV calls in 10 s (${idle * 6} per minute)`);
      assert.equal(idle, 0, "asleep, no KV call");
      const again = await chat(gw.url);
      assert.equal(again.status, 200);
      await again.body?.cancel();
      await new Promise((r) => setTimeout(r, 1500));
      const woken = ((await server.calls()).byToken[token] ?? 0) - before;
      assert.ok(woken > 0, "woken, it beats again");
      assert.ok(gw.stdout.events().some((e) => e.event === "background_sleep"));
    } finally {
      await stopProcesses([gw]);
      await mock.close();
      await server.close();
    }
  },
});
