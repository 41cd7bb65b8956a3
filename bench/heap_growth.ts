/**
 * What stays on the V8 heap after a fresh process's first round of 10,000
 * queued-then-aborted requests (issue 4's memory target): runs
 * bench/queue_memory.ts under the inspector, takes a heap snapshot before
 * and after that round, and prints the node types that grew most and who
 * holds the largest new arrays. Run:
 * `deno run -A bench/heap_growth.ts [N]` (a minute or so).
 *
 * @module
 */
import { connectInspector } from "./inspector.ts";
import { freePort } from "../tests/support/net.ts";
import { queueMemoryArgs } from "./bench_kit.ts";

const N = Deno.args[0] ?? "10000";
const port = freePort();
const child = new Deno.Command(Deno.execPath(), {
  args: queueMemoryArgs(N, [`--inspect=127.0.0.1:${port}`]),
  env: { QUEUE_MEMORY_PAUSE: "1" },
  stdin: "piped",
  stdout: "piped",
  stderr: "null",
}).spawn();
const inspector = await connectInspector(port);
await inspector.send("HeapProfiler.enable");

interface Snapshot {
  snapshot: {
    meta: {
      node_fields: string[];
      node_types: [string[]];
      edge_fields: string[];
      edge_types: [string[]];
    };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}

async function takeSnapshot(): Promise<Snapshot> {
  await inspector.send("HeapProfiler.collectGarbage");
  const chunks: string[] = [];
  inspector.on("HeapProfiler.addHeapSnapshotChunk", (p) => chunks.push(p.chunk as string));
  await inspector.send("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
  return JSON.parse(chunks.join(""));
}

const snapshots: Snapshot[] = [];
const writer = child.stdin.getWriter();
let result = "";
let buffered = "";
for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
  buffered += text;
  let nl;
  while ((nl = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    if (line.startsWith("pause ")) {
      snapshots.push(await takeSnapshot());
      // The child waits for the debugger to leave before it exits.
      if (snapshots.length === 2) inspector.close();
      await writer.write(new TextEncoder().encode("go\n"));
    } else if (line.startsWith("{")) result = line;
  }
}
await child.status;
if (snapshots.length !== 2) throw new Error("queue_memory.ts did not pause twice");

/** Node index → a label; sizes summed by label. */
function summarize(s: Snapshot) {
  const f = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const width = f.length;
  const [type, name, size] = ["type", "name", "self_size"].map((k) => f.indexOf(k));
  const label = (i: number) =>
    `${types[s.nodes[i + type]]}:${s.strings[s.nodes[i + name]].slice(0, 60)}`;
  const bySum = new Map<string, number>();
  for (let i = 0; i < s.nodes.length; i += width) {
    bySum.set(label(i), (bySum.get(label(i)) ?? 0) + s.nodes[i + size]);
  }
  return { bySum, label, width, size, type, types };
}

/** Up to `depth` strong retainers of node index `target`, nearest first. */
function retainers(s: Snapshot, target: number, depth: number, label: (i: number) => string) {
  const nf = s.snapshot.meta.node_fields, ef = s.snapshot.meta.edge_fields;
  const edgeTypes = s.snapshot.meta.edge_types[0];
  const [count] = ["edge_count"].map((k) => nf.indexOf(k));
  const parent = new Map<number, [number, string]>();
  for (let i = 0, e = 0; i < s.nodes.length; i += nf.length) {
    for (let k = 0; k < s.nodes[i + count]; k++, e += ef.length) {
      const kind = edgeTypes[s.edges[e]];
      if (kind === "weak" || parent.has(s.edges[e + 2])) continue;
      const by = kind === "element" || kind === "hidden"
        ? `[${s.edges[e + 1]}]`
        : s.strings[s.edges[e + 1]];
      parent.set(s.edges[e + 2], [i, by]);
    }
  }
  const chain: string[] = [];
  for (let at = target, d = 0; d < depth; d++) {
    const p = parent.get(at);
    if (!p) break;
    chain.push(`${label(p[0])} (.${p[1]})`);
    at = p[0];
  }
  return chain;
}

const [before, after] = snapshots.map(summarize);
const growth = [...after.bySum].map(([k, v]) => [k, v - (before.bySum.get(k) ?? 0)] as const)
  .sort((a, b) => b[1] - a[1]);
const total = growth.reduce((a, [, v]) => a + v, 0);
console.log(`queue_memory.ts: ${result}`);
console.log(
  `\nheap growth over the first round: ${(total / 1024).toFixed(0)} KiB; largest by node:`,
);
for (const [k, v] of growth.slice(0, 10)) {
  console.log(`${(v / 1024).toFixed(0).padStart(7)} KiB  ${k}`);
}

const s = snapshots[1];
const big: number[] = [];
for (let i = 0; i < s.nodes.length; i += after.width) {
  if (after.types[s.nodes[i + after.type]] === "array" && s.nodes[i + after.size] >= 64 * 1024) {
    big.push(i);
  }
}
console.log("\narrays of 64 KiB or more after the round, and what holds them:");
for (const i of big.sort((a, b) => s.nodes[b + after.size] - s.nodes[a + after.size])) {
  console.log(`${(s.nodes[i + after.size] / 1024).toFixed(0).padStart(7)} KiB  held by`);
  for (const r of retainers(s, i, 6, after.label)) console.log(`           ${r}`);
}
