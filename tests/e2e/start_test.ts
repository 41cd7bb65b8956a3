/**
 * Starting the gateway as the README says (`deno task start`) with its
 * state anywhere, with a KV_PATH that cannot be used, and with a KV that
 * does not answer.
 */
import { DatabaseSync } from "node:sqlite";
import assert from "node:assert/strict";
import { chatBody, PASSWORD } from "../support/harness.ts";
import { startMockUpstream } from "../support/mock_upstream.ts";
import { freePort } from "../support/net.ts";
import {
  type GatewayProcess,
  runGatewayToExit,
  startGatewayProcess,
  stopProcesses,
} from "../support/process.ts";
import { keyHealthPrefix } from "../../kv/mod.ts";
import { keyId } from "../../keys/mod.ts";

const ROOT = new URL("../../", import.meta.url);

async function chat(url: string): Promise<number> {
  const r = await fetch(`${url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
    body: chatBody(),
    signal: AbortSignal.timeout(15_000),
  });
  await r.body?.cancel();
  return r.status;
}

/** Starts a gateway process against a fresh mock, runs `fn`, and cleans up. */
async function withGateway(
  kvPath: string,
  fn: (gw: GatewayProcess, mockUrl: string) => Promise<void>,
  env: Record<string, string> = {},
): Promise<void> {
  const mock = await startMockUpstream({});
  let gw: GatewayProcess | undefined;
  try {
    gw = await startGatewayProcess({
      kvPath,
      config: { services: { openai: { target: mock.url } } },
      env,
    });
    await fn(gw, mock.url);
  } finally {
    if (gw) await stopProcesses([gw]);
    await mock.close();
  }
}

Deno.test("deno task start keeps its state at an absolute KV_PATH outside ./data, in a directory made for it", async () => {
  const dir = await Deno.makeTempDir();
  const kvPath = `${dir}/not/yet/there/kv.sqlite3`;
  try {
    await withGateway(kvPath, async (gw) => {
      assert.deepEqual(await chat(gw.url), 200);
    });
    assert((await Deno.stat(kvPath)).isFile, "the KV file was made");
    const kv = await Deno.openKv(kvPath);
    kv.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task start takes a relative KV_PATH (from the project root)", async () => {
  const rel = `data/test-${crypto.randomUUID()}`;
  try {
    await withGateway(`${rel}/kv.sqlite3`, async (gw) => {
      assert.deepEqual(await chat(gw.url), 200);
    });
    assert((await Deno.stat(new URL(`${rel}/kv.sqlite3`, ROOT))).isFile);
  } finally {
    await Deno.remove(new URL(rel, ROOT), { recursive: true }).catch(() => {});
  }
});

/** A KV_PATH that cannot be used stops start-up: one line naming it and why, exit 1, no stack. */
async function assertRefused(kvPath: string, reason: RegExp, env: Record<string, string> = {}) {
  const { code, stderr, stdout } = await runGatewayToExit({ kvPath, env });
  const lines = stderr.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("Task "));
  assert.deepEqual(code, 1, `exit code for ${kvPath}; stderr: ${stderr}`);
  assert.deepEqual(lines.length, 1, `one line for ${kvPath}, got: ${stderr}`);
  assert(lines[0].includes(`KV_PATH "${kvPath}"`), `names KV_PATH and the value: ${lines[0]}`);
  assert(reason.test(lines[0]), `says why (${reason}): ${lines[0]}`);
  assert(!/\bat \S+:\d+/.test(stderr + stdout), `no stack trace: ${stderr}`);
  assert(!stdout.includes('"event":"listening"'), "never listened");
}

Deno.test("a KV_PATH that cannot be used stops deno task start with one line naming it and why", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "");
    await assertRefused(dir, /is a directory/);
    await assertRefused(`${dir}/file/kv.sqlite3`, /part of the path is a file/);
    await assertRefused("http://[::1", /not a valid URL/);
    await assertRefused("ftp://kv.example/db", /only http\(s\) URLs/);
    // Whatever this test process's environment holds, the child has no token.
    await assertRefused("http://127.0.0.1:1", /DENO_KV_ACCESS_TOKEN/, { DENO_KV_ACCESS_TOKEN: "" });
    await Deno.writeTextFile(`${dir}/garbage.sqlite3`, "this is not a database ".repeat(100));
    await assertRefused(`${dir}/garbage.sqlite3`, /not a database/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a KV_PATH on a read-only file system stops start-up with one line", async (t) => {
  const dir = await Deno.makeTempDir();
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "ro", "tmpfs", dir],
    stderr: "null",
  }).output().catch(() => undefined);
  try {
    if (!mount?.success) {
      // Mounting needs root; the reason's wording is pinned in kv/path_test.ts.
      await t.step({
        name: "skipped: cannot mount a read-only file system here",
        ignore: true,
        fn() {},
      });
      return;
    }
    await assertRefused(`${dir}/kv.sqlite3`, /read-only/);
  } finally {
    if (mount?.success) await new Deno.Command("umount", { args: [dir] }).output();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Fake KV Connect endpoints: one that refuses, one that never answers, one that answers 500. */
async function withBrokenKv(
  fn: (urls: Record<"refusing" | "hanging" | "failing", string>) => Promise<void>,
) {
  const hangingListener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const c of hangingListener) held.push(c);
    } catch { /* closed */ }
  })();
  const ac = new AbortController();
  const failing = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    () => new Response("internal error", { status: 500 }),
  );
  try {
    await fn({
      refusing: `http://127.0.0.1:${freePort()}`,
      hanging: `http://127.0.0.1:${(hangingListener.addr as Deno.NetAddr).port}`,
      failing: `http://127.0.0.1:${failing.addr.port}`,
    });
  } finally {
    hangingListener.close();
    for (const c of held) c.close();
    await accepting;
    ac.abort();
    await failing.finished;
  }
}

Deno.test("KV Connect down at start-up (refused, hanging, 500): deno task start serves within 10 s, degraded", async () => {
  await withBrokenKv(async (urls) => {
    for (const [kind, url] of Object.entries(urls)) {
      const t0 = Date.now();
      await withGateway(url, async (gw) => {
        const home = await fetch(`${gw.url}/`);
        assert.deepEqual(home.status, 200, `${kind}: / answers`);
        await home.body?.cancel();
        assert.deepEqual(await chat(gw.url), 200, `${kind}: proxied`);
        const took = Date.now() - t0;
        assert(took < 10_000, `${kind}: serving and proxying took ${took} ms from start`);
        // Log lines go out in batches, at most 250 ms after they are made.
        await new Promise((r) => setTimeout(r, 300));
        const degraded = gw.stdout.events().filter((e) => e.event === "kv_degraded");
        assert.deepEqual(degraded.length, 1, `${kind}: kv_degraded logged once`);
      }, { DENO_KV_ACCESS_TOKEN: "test-token-not-a-secret-0123456789" });
    }
  });
});

/** Holds SQLite's exclusive lock on a KV file, as a busy neighbour process would. */
function lockKvFile(path: string): () => void {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec("BEGIN EXCLUSIVE");
  return () => {
    db.exec("COMMIT");
    db.close();
  };
}

Deno.test("a KV file locked at start-up: serves degraded, rejoins by itself when the lock goes, and a key disabled meanwhile stays disabled across a restart", async () => {
  const dir = await Deno.makeTempDir();
  const kvPath = `${dir}/kv.sqlite3`;
  // Only sk-two is a real key: sk-one gets 401 and must be disabled.
  const mock = await startMockUpstream({ keys: ["sk-two"] });
  const config = { services: { openai: { target: mock.url } }, kvTimeoutMs: 500 };
  const seed = await Deno.openKv(kvPath);
  seed.close();
  let unlock: (() => void) | undefined = lockKvFile(kvPath);
  let gw: GatewayProcess | undefined;
  try {
    const t0 = Date.now();
    gw = await startGatewayProcess({ kvPath, config });
    // Both keys get tried: sk-one answers 401 and is disabled (in memory: KV is locked).
    for (let i = 0; i < 4; i++) assert.deepEqual(await chat(gw.url), 200);
    assert(Date.now() - t0 < 10_000, `serving took ${Date.now() - t0} ms`);
    assert(gw.stdout.events().some((e) => e.event === "kv_degraded"), "kv_degraded logged");
    unlock();
    unlock = undefined;
    // It rejoins by itself.
    for (let i = 0; i < 100; i++) {
      if (gw.stdout.events().some((e) => e.event === "kv_recovered")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert(gw.stdout.events().some((e) => e.event === "kv_recovered"), "kv_recovered logged");
    // The rest learned while degraded reaches KV.
    const one = await keyId("sk-one");
    let stored: unknown;
    for (let i = 0; i < 50 && !stored; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const kv = await Deno.openKv(kvPath);
      stored = (await kv.get([...keyHealthPrefix("openai"), one])).value;
      kv.close();
    }
    assert(stored, "the key disabled while degraded was written to KV");
    await stopProcesses([gw]);
    gw = undefined;
    // After a restart the key is still disabled: every request goes to sk-two.
    mock.reset();
    gw = await startGatewayProcess({ kvPath, config });
    for (let i = 0; i < 4; i++) assert.deepEqual(await chat(gw.url), 200);
    assert.deepEqual(mock.received.filter((r) => r.key === "sk-one").length, 0, "sk-one stays out");
  } finally {
    unlock?.();
    if (gw) await stopProcesses([gw]);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a second gateway on a port already taken stops with one line, exit 1, no stack trace", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await Deno.makeTempDir();
  try {
    const { code, stderr } = await runGatewayToExit({
      kvPath: `${dir}/kv.sqlite3`,
      env: { PORT: String(taken.addr.port) },
    });
    const lines = stderr.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("Task "));
    assert.deepEqual(code, 1);
    assert.deepEqual(lines.length, 1, `one line, got: ${stderr}`);
    assert(lines[0].includes(`cannot listen on 127.0.0.1:${taken.addr.port}`), lines[0]);
    assert(!/\bat \S+:\d+/.test(stderr), `no stack trace: ${stderr}`);
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("on Deno Deploy with a :memory: KV_PATH, start-up says once that limits hold per instance", async () => {
  const dir = await Deno.makeTempDir();
  const gw = await startGatewayProcess({
    kvPath: ":memory:",
    env: { DENO_DEPLOYMENT_ID: "test-deployment" },
  });
  try {
    const warnings = gw.stdout.events().filter((e) => e.event === "kv_warning");
    assert.deepEqual(warnings.length, 1);
    assert(String(warnings[0].message).includes("limits hold per instance"));
  } finally {
    await stopProcesses([gw]);
    await Deno.remove(dir, { recursive: true });
  }
});

/** Ms from spawning `deno task start` to the first 200 on `/`, the best of two starts. */
async function timeToServe(kvPath: string, env: Record<string, string> = {}): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 2; i++) {
    const t0 = Date.now();
    const gw = await startGatewayProcess({ kvPath, env });
    try {
      for (;;) {
        const r = await fetch(`${gw.url}/`).catch(() => undefined);
        await r?.body?.cancel();
        if (r?.status === 200) break;
      }
      times.push(Date.now() - t0);
    } finally {
      await stopProcesses([gw]);
    }
  }
  return Math.min(...times);
}

Deno.test("serve first: with a KV Connect server that never answers, / answers as soon as with a local KV file (0.3 s later at most)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const local = await timeToServe(`${dir}/kv.sqlite3`);
    await withBrokenKv(async ({ hanging }) => {
      const remote = await timeToServe(hanging, { DENO_KV_ACCESS_TOKEN: "test-token-0123456789" });
      console.log(
        `time to the first 200 on /: KV file ${local} ms, KV Connect not answering ${remote} ms`,
      );
      assert(remote <= local + 300, `${remote} ms against ${local} ms`);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
