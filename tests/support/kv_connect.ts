/**
 * Starts the KV Connect test server (`kv_connect/server.ts`) as a process of
 * its own and steers it: latency per access token, faults, a call counter.
 * Where its native module cannot be loaded (another platform, no registry),
 * {@linkcode kvConnectUnavailable} says why and the tests that need it skip.
 *
 * @module
 */
import { readOutput } from "./process.ts";

const DIR = new URL("./kv_connect/", import.meta.url);

/** Calls the server answered, by kind (metadata, snapshot_read, atomic_write, watch) and token. */
export interface KvCalls {
  total: number;
  byKind: Record<string, number>;
  byToken: Record<string, number>;
  /** By kind and the first segment of the first key named (`atomic_write:slots`). */
  byKey: Record<string, number>;
}

/** A running KV Connect server. */
export interface KvConnectServer {
  /** What `Deno.openKv` (and kvgate's `KV_PATH`) is given. */
  url: string;
  /** Every call made with `token` (or, without one, any other token) waits `ms` first. */
  setLatency(ms: number, token?: string): Promise<void>;
  /** How long an eventual read waits (a replica near the instance). Default 0. */
  setEventualLatency(ms: number): Promise<void>;
  /** "refuse" closes the listener, "hang" holds calls, "500" fails them; "none" clears. */
  setFault(mode: "none" | "refuse" | "hang" | "500", token?: string): Promise<void>;
  calls(): Promise<KvCalls>;
  resetCalls(): Promise<void>;
  close(): Promise<void>;
}

let installed: Promise<void> | undefined;

/**
 * Puts the pinned native module in the fixture's node_modules (a fresh
 * clone has none, and a module only `require`d is not installed on the fly).
 */
function install(): Promise<void> {
  installed ??= (async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["install", "--config", new URL("deno.json", DIR).pathname],
      cwd: DIR,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`deno install failed: ${new TextDecoder().decode(out.stderr).slice(-500)}`);
    }
  })();
  return installed;
}

function spawn(): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", new URL("deno.json", DIR).pathname, "server.ts"],
    cwd: DIR,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Starts a server; throws with its output if it does not come up within 60 s. */
export async function startKvConnect(): Promise<KvConnectServer> {
  await install();
  const child = spawn();
  const stdout = readOutput(child.stdout, `"event":"kv_connect"`);
  const stderr = readOutput(child.stderr);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    stdout.ready.then(() => "ready"),
    child.status.then(() => "exited"),
    new Promise((r) => timer = setTimeout(() => r("timeout"), 60_000)),
  ]);
  clearTimeout(timer);
  if (outcome !== "ready") {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    await Promise.all([stdout.done, stderr.done]);
    throw new Error(`KV Connect server ${outcome}: ${stderr.text().slice(-2000)}`);
  }
  const line = stdout.events().find((e) => e.event === "kv_connect")!;
  const control = String(line.control);
  const post = async (path: string, body: unknown) => {
    const r = await fetch(`${control}${path}`, { method: "POST", body: JSON.stringify(body) });
    return await r.json();
  };
  return {
    url: String(line.url),
    setLatency: async (ms, token) => void await post("/latency", { ms, token }),
    setEventualLatency: async (ms) => void await post("/latency", { ms, eventual: true }),
    setFault: async (mode, token) => void await post("/fault", { mode, token }),
    calls: async () => await (await fetch(`${control}/calls`)).json(),
    resetCalls: async () => void await post("/calls/reset", {}),
    close: async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      await Promise.all([stdout.done, stderr.done]);
    },
  };
}

let availability: Promise<string | null> | undefined;

/**
 * Why the KV Connect server cannot run here, or null when it can (tried once
 * per test process: a server is started and stopped). With
 * `KVGATE_REQUIRE_KV_CONNECT=1` (our CI) it throws instead: there, a skip
 * would hide a broken fixture.
 */
export async function kvConnectUnavailable(): Promise<string | null> {
  const why = await tryKvConnect();
  if (why !== null && Deno.env.get("KVGATE_REQUIRE_KV_CONNECT") === "1") {
    throw new Error(`KV Connect server required (KVGATE_REQUIRE_KV_CONNECT=1): ${why}`);
  }
  return why;
}

function tryKvConnect(): Promise<string | null> {
  availability ??= (async () => {
    if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
      return `the denokv engine's native module is pinned for linux x64, not ${Deno.build.target}`;
    }
    try {
      await (await startKvConnect()).close();
      return null;
    } catch (e) {
      return String(e instanceof Error ? e.message : e).split("\n")[0];
    }
  })();
  return availability;
}
