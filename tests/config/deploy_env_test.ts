/**
 * Deno Deploy refuses app variables named `OTEL_*`, `DENO_*` (but its own)
 * and `LD_*`: nothing kvgate needs there may be named so.
 */
import assert from "node:assert/strict";
import { ConfigError, loadConfig, settingWarnings } from "../../config/mod.ts";

const ROOT = new URL("../../", import.meta.url);
/** Set by Deploy itself, or by an operator only off Deploy (OTEL_DENO, DENO_KV_ACCESS_TOKEN for a self-hosted denokv). */
const NOT_SET_ON_DEPLOY = new Set([
  "DENO_DEPLOY",
  "DENO_DEPLOYMENT_ID",
  "DENO_TIMELINE",
  "DENO_REGION",
  "OTEL_DENO",
  "DENO_KV_ACCESS_TOKEN",
]);
const RESERVED = /^(OTEL_|DENO_|LD_)/;

async function sources(dir: URL, out: string[] = []): Promise<string[]> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory && !["tests", "bench", "node_modules", ".git", "data"].includes(e.name)) {
      await sources(new URL(`${e.name}/`, dir), out);
    } else if (e.isFile && e.name.endsWith(".ts")) {
      out.push(await Deno.readTextFile(new URL(e.name, dir)));
    }
  }
  return out;
}

Deno.test("no variable kvgate reads is one Deno Deploy refuses, but those Deploy sets itself", async () => {
  const read = new Set<string>();
  for (const text of await sources(ROOT)) {
    for (const m of text.matchAll(/(?:env|Deno\.env\.get)\(\s*"([A-Z0-9_]+)"\s*\)/g)) {
      read.add(m[1]);
    }
  }
  assert.ok(read.has("ACCESS_PASSWORD") && read.has("KV_PATH"), "the scan finds the reads");
  const refused = [...read].filter((n) => RESERVED.test(n) && !NOT_SET_ON_DEPLOY.has(n));
  assert.deepEqual(refused, []);
});

Deno.test("the README's Deno Deploy section tells the user to set no variable Deploy refuses", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const start = readme.indexOf("## Deploying to Deno Deploy");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 5));
  assert.ok(start >= 0);
  const named = [...section.matchAll(/`([A-Z][A-Z0-9_]{2,})(?:=[^`]*)?`/g)].map((m) => m[1]);
  const refused = named.filter((n) => RESERVED.test(n) && !NOT_SET_ON_DEPLOY.has(n));
  assert.deepEqual(refused, []);
  assert.ok(!/set `?OTEL_DENO/i.test(section), "OpenTelemetry needs no variable there");
});

Deno.test("a service whose keys' variable Deploy would refuse is refused at start, naming it", () => {
  const env = (n: string) =>
    n === "GATEWAY_CONFIG"
      ? JSON.stringify({ services: { deno: { target: "https://x.example" } } })
      : undefined;
  assert.throws(
    () => loadConfig(env),
    (e) =>
      e instanceof ConfigError &&
      /services\.deno\.envKey DENO_API_KEYS starts with a prefix/.test(e.message),
  );
});

Deno.test("on Deno Deploy (DENO_DEPLOY=true) kvgate's OpenTelemetry is on without any OTEL_ variable", () => {
  assert.equal(loadConfig((n) => (n === "DENO_DEPLOY" ? "true" : undefined)).otel, true);
  assert.equal(loadConfig(() => undefined).otel, false);
});

Deno.test("on Deno Deploy, a shutdownMs that outlasts the 5 s before SIGKILL is warned of at start; the default is not", () => {
  const on = (extra: Record<string, string>) =>
    loadConfig((n) => ({ ACCESS_PASSWORD: "p".repeat(24), DENO_DEPLOYMENT_ID: "x", ...extra })[n]);
  assert.deepEqual(settingWarnings(on({})), [], "the default 4500 fits");
  assert.deepEqual(settingWarnings(on({ GATEWAY_CONFIG: '{"shutdownMs":4750}' })), []);
  const [warning] = settingWarnings(on({ GATEWAY_CONFIG: '{"shutdownMs":6000}' }));
  assert.match(warning, /^shutdownMs is 6000: Deno Deploy kills an instance 5000 ms after SIGINT/);
  const local = loadConfig((n) =>
    ({ ACCESS_PASSWORD: "p".repeat(24), GATEWAY_CONFIG: '{"shutdownMs":6000}' })[n]
  );
  assert.deepEqual(settingWarnings(local), [], "off Deploy nothing kills it at 5 s");
});
