/**
 * Bytes allocated per proxied request, by function: kvgate (main.ts, limits
 * far above the load) under wrk at 32 connections, with V8's sampling heap
 * profiler on (collected objects included). Needs wrk, like bench/run.ts.
 * Run: `deno run -A bench/alloc_profile.ts [seconds]`.
 *
 * @module
 */
import { connectInspector } from "./inspector.ts";
import { freePort } from "../tests/support/net.ts";
import { CHAT_LUA, kvgateEnv, waitListening } from "./bench_kit.ts";

const SECONDS = Number(Deno.args[0] ?? 4);
const root = new URL("../", import.meta.url).pathname;
const dir = await Deno.makeTempDir();
const [mockPort, gwPort, inspectPort] = [freePort(), freePort(), freePort()];
const run = (args: string[], env: Record<string, string>) =>
  new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", "--unstable-no-legacy-abort", ...args],
    cwd: root,
    env: { HOST: "127.0.0.1", ...env },
    stdout: "null",
    stderr: "null",
  }).spawn();
const mock = run(["bench/mock_upstream.ts"], { PORT: String(mockPort), LATENCY_MS: "2" });
const mockBase = `http://127.0.0.1:${mockPort}`;
const gateway = run([`--inspect=127.0.0.1:${inspectPort}`, "main.ts"], {
  PORT: String(gwPort),
  ...kvgateEnv(mockBase, `${dir}/kv.sqlite3`, { rps: 1e6, burst: 1e6, maxConn: 10_000 }),
});
const lua = `${dir}/post.lua`;
await Deno.writeTextFile(lua, CHAT_LUA);
async function wrk(seconds: number): Promise<number> {
  const url = `http://127.0.0.1:${gwPort}/openai/v1/chat/completions`;
  const out = await new Deno.Command("wrk", {
    args: ["-t1", "-c32", `-d${seconds}s`, "-s", lua, url],
    stdout: "piped",
  }).output();
  return Number(/(\d+) requests in/.exec(new TextDecoder().decode(out.stdout))?.[1] ?? NaN);
}

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

try {
  const inspector = await connectInspector(inspectPort);
  await Promise.all([
    waitListening(mockBase, "mock upstream"),
    waitListening(`http://127.0.0.1:${gwPort}`, "kvgate"),
  ]);
  await wrk(2); // warm-up
  await inspector.send("HeapProfiler.enable");
  await inspector.send("HeapProfiler.startSampling", {
    samplingInterval: 256,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  const requests = await wrk(SECONDS);
  const { profile } = await inspector.send<{ profile: { head: SamplingNode } }>(
    "HeapProfiler.stopSampling",
  );
  inspector.close();
  const bytes = new Map<string, number>();
  let total = 0;
  const walk = (node: SamplingNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.replace(`file://${root}`, "");
    const where = `${functionName || "(anonymous)"} ${file}:${lineNumber + 1}`;
    bytes.set(where, (bytes.get(where) ?? 0) + node.selfSize);
    total += node.selfSize;
    node.children.forEach(walk);
  };
  walk(profile.head);
  console.log(`${requests} requests; about ${Math.round(total / requests)} bytes allocated each`);
  for (const [where, b] of [...bytes].sort((a, b) => b[1] - a[1]).slice(0, 30)) {
    console.log(`${String(Math.round(b / requests)).padStart(7)} B  ${where}`);
  }
} finally {
  gateway.kill("SIGKILL");
  mock.kill("SIGKILL");
  await Promise.all([gateway.status, mock.status]);
  await Deno.remove(dir, { recursive: true });
}
