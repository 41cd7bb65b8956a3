/**
 * The folders read bottom-up (ARCHITECTURE.md): a module imports only from
 * its own folder and the folders below it, and no chain of imports (types
 * included) comes back to where it started. Read from the source's own
 * import lines, so a wrong-way import fails here, not in a review.
 */
import assert from "node:assert/strict";

/** The source folders, bottom first; `main.ts` sits above them all. */
export const LAYERS = [
  "lib",
  "providers",
  "kv",
  "limiter",
  "teams",
  "keys",
  "config",
  "status",
  "gateway",
] as const;

const ROOT = new URL("../../", import.meta.url);
const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+"(\.[^"]+)"/g;

/** Every source file (tests and bench aside), by path from the root, with what it imports. */
async function sourceGraph(): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  const add = async (path: string) => {
    const text = await Deno.readTextFile(new URL(path, ROOT));
    const base = new URL(path, ROOT);
    const deps = [...text.matchAll(IMPORT)].map((m) =>
      new URL(m[1], base).pathname.slice(ROOT.pathname.length)
    );
    graph.set(path, deps);
  };
  // A layer's folder and the folders in it (gateway/stages, gateway/admin).
  const addFolder = async (folder: string): Promise<void> => {
    for await (const entry of Deno.readDir(new URL(`${folder}/`, ROOT))) {
      if (entry.isDirectory) await addFolder(`${folder}/${entry.name}`);
      else if (entry.isFile && entry.name.endsWith(".ts")) await add(`${folder}/${entry.name}`);
    }
  };
  await add("main.ts");
  for (const folder of LAYERS) await addFolder(folder);
  return graph;
}

const layerOf = (path: string) =>
  path === "main.ts" ? LAYERS.length : LAYERS.indexOf(path.split("/")[0] as typeof LAYERS[number]);

Deno.test("imports go down the layers: each folder imports only itself and the folders below it", async () => {
  const graph = await sourceGraph();
  assert.ok(graph.size > 50, `read the source (${graph.size} files)`);
  const wrongWay: string[] = [];
  for (const [from, deps] of graph) {
    for (const to of deps) {
      assert.ok(layerOf(to) >= 0, `${from} imports ${to}, outside the source folders`);
      if (layerOf(to) > layerOf(from)) wrongWay.push(`${from} → ${to}`);
    }
  }
  assert.deepEqual(wrongWay, [], "imports going up a layer");
});

Deno.test("no import cycle between source files (types included)", async () => {
  const graph = await sourceGraph();
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const visit = (path: string, trail: string[]) => {
    if (state.get(path) === "done") return;
    if (state.get(path) === "open") {
      cycles.push([...trail.slice(trail.indexOf(path)), path].join(" → "));
      return;
    }
    state.set(path, "open");
    for (const dep of graph.get(path) ?? []) visit(dep, [...trail, path]);
    state.set(path, "done");
  };
  for (const path of graph.keys()) visit(path, []);
  assert.deepEqual(cycles, []);
});
