/**
 * The KV Connect test server itself: Deno's own KV client reaches it as it
 * reaches Deploy's KV, with the latency, faults and counts tests rely on.
 */
import assert from "node:assert/strict";
import { kvConnectUnavailable, startKvConnect } from "../support/kv_connect.ts";

const unavailable = await kvConnectUnavailable();

/**
 * Deno's KV client reads its access token from the environment only: set
 * for the call to `Deno.openKv`, then put back, so that no process this
 * test process starts later inherits it.
 */
async function openAs(url: string, token: string): Promise<Deno.Kv> {
  const before = Deno.env.get("DENO_KV_ACCESS_TOKEN");
  Deno.env.set("DENO_KV_ACCESS_TOKEN", token);
  try {
    return await Deno.openKv(url);
  } finally {
    if (before === undefined) Deno.env.delete("DENO_KV_ACCESS_TOKEN");
    else Deno.env.set("DENO_KV_ACCESS_TOKEN", before);
  }
}
if (unavailable) console.log(`KV Connect tests skipped: ${unavailable}`);

Deno.test({
  name:
    "the KV Connect server: Deno.openKv(url) reads, writes atomically and counts calls per token",
  ignore: unavailable !== null,
  async fn() {
    const server = await startKvConnect();
    const kv = await openAs(server.url, "region-a");
    try {
      await server.resetCalls();
      await kv.set(["a"], 1);
      const ok = await kv.atomic().check({ key: ["a"], versionstamp: null }).set(["a"], 2).commit();
      assert.equal(ok.ok, false, "a check on a key that exists fails");
      assert.equal((await kv.get(["a"])).value, 1);
      await kv.atomic().sum(["n"], 5n).commit();
      assert.equal((await kv.get<Deno.KvU64>(["n"])).value?.value, 5n);
      const calls = await server.calls();
      assert.equal(calls.byKind.atomic_write, 3);
      assert.ok(calls.byKind.snapshot_read >= 2);
      assert.equal(calls.byToken["region-a"], calls.total);
    } finally {
      kv.close();
      await server.close();
    }
  },
});

Deno.test({
  name: "the KV Connect server: latency per access token, and a 500 fault the client rides out",
  ignore: unavailable !== null,
  async fn() {
    const server = await startKvConnect();
    const kv = await openAs(server.url, "far");
    try {
      await kv.get(["warm"]);
      await server.setLatency(150, "far");
      let t = performance.now();
      await kv.get(["x"]);
      const far = performance.now() - t;
      await server.setLatency(0, "far");
      t = performance.now();
      await kv.get(["x"]);
      const near = performance.now() - t;
      assert.ok(far >= 150 && near < 100, `far ${far} ms, near ${near} ms`);
      await server.setFault("500");
      const write = kv.set(["after"], 1);
      await new Promise((r) => setTimeout(r, 300));
      await server.setFault("none");
      await write;
      assert.equal((await kv.get(["after"])).value, 1);
    } finally {
      kv.close();
      await server.close();
    }
  },
});
