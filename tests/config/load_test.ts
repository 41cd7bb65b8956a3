import assert from "node:assert/strict";
import { ConfigError, loadConfig, parseKeyList } from "../../config/mod.ts";

const env = (vars: Record<string, string>) => (n: string) => vars[n];

Deno.test("loadConfig() has the built-in services with the documented defaults", () => {
  const c = loadConfig(env({}));
  assert.deepEqual(c.services.cerebras.target, "https://api.cerebras.ai");
  assert.deepEqual([
    c.services.cerebras.rps,
    c.services.cerebras.burst,
    c.services.cerebras.maxConn,
  ], [
    4,
    8,
    6,
  ]);
  assert.deepEqual([c.services.claude.rps, c.services.claude.burst, c.services.claude.maxConn], [
    2,
    2,
    1,
  ]);
  assert.deepEqual(c.services.claude.envKey, "CLAUDE_API_KEYS");
  assert.deepEqual(c.services.groq.target, "https://api.groq.com/openai");
  assert.deepEqual(Object.keys(c.services).length, 12);
  assert.deepEqual(c.queueLimit, 200);
  assert.deepEqual(c.queueTimeoutMs, 60_000);
  assert.deepEqual(c.maxRetries, 2);
  assert.deepEqual(c.maxBodyBytes, 32 * 1024 * 1024);
  assert.deepEqual(c.port, 8000);
  assert.deepEqual(c.password, undefined);
  assert(c.kvPath?.startsWith("./data/"));
  assert.deepEqual([c.drainMs, c.expectedInstances], [4000, 1]);
  assert.deepEqual(c.services.groq.streamRelay, "native");
});

Deno.test("parseKeyList() splits on commas and newlines, trims, drops empties and duplicates", () => {
  assert.deepEqual(parseKeyList(" k1, k2\nk3\r\n,,k1 \n"), ["k1", "k2", "k3"]);
  assert.deepEqual(parseKeyList(undefined), []);
});

Deno.test("GATEWAY_CONFIG overrides any field and adds new OpenAI-compatible services", () => {
  const c = loadConfig(env({
    GATEWAY_CONFIG: JSON.stringify({
      queueLimit: 5,
      services: { groq: { rps: 2 }, myllm: { target: "http://127.0.0.1:9999/api/" } },
    }),
    MYLLM_API_KEYS: "x,y",
  }));
  assert.deepEqual(c.services.groq.rps, 2);
  assert.deepEqual(c.services.groq.burst, 3);
  assert.deepEqual(c.services.myllm.target, "http://127.0.0.1:9999/api");
  assert.deepEqual(c.services.myllm.keys, ["x", "y"]);
  assert.deepEqual(c.services.myllm.style, "openai");
  assert.deepEqual(c.queueLimit, 5);
});

Deno.test("GATEWAY_CONFIG_FILE is read and GATEWAY_CONFIG is merged over it", () => {
  const files: Record<string, string> = {
    "/etc/kvgate.json": JSON.stringify({
      maxRetries: 4,
      services: { openai: { rps: 1, burst: 1 } },
    }),
  };
  const c = loadConfig(
    env({
      GATEWAY_CONFIG_FILE: "/etc/kvgate.json",
      GATEWAY_CONFIG: '{"services":{"openai":{"burst":9}}}',
    }),
    { readFile: (p) => files[p] },
  );
  assert.deepEqual(c.maxRetries, 4);
  assert.deepEqual(c.services.openai.rps, 1);
  assert.deepEqual(c.services.openai.burst, 9);
});

Deno.test("invalid configuration stops start-up with one message naming the service and field", () => {
  const bad = (cfg: string) => () => loadConfig(env({ GATEWAY_CONFIG: cfg }));
  assert.throws(
    bad('{"services":{"groq":{"rsp":1}}}'),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message.includes("GATEWAY_CONFIG.services.groq.rsp is not a known field"),
  );
  assert.throws(
    bad('{"services":{"groq":{"rps":-1}}}'),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message.includes("GATEWAY_CONFIG.services.groq.rps must be a positive number (got -1)"),
  );
  assert.throws(
    bad('{"services":{"groq":{"maxConn":0}}}'),
    (e: unknown) => e instanceof ConfigError && e.message.includes("services.groq.maxConn"),
  );
  assert.throws(
    bad('{"services":{"x":{"target":"ftp://a"}}}'),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message.includes("services.x.target must be an absolute http(s) URL"),
  );
  assert.throws(
    bad('{"services":{"x":{"target":"/relative"}}}'),
    (e: unknown) => e instanceof ConfigError && e.message.includes("services.x.target"),
  );
  assert.throws(
    bad('{"services":{"x":{"rps":1}}}'),
    (e: unknown) => e instanceof ConfigError && e.message.includes("services.x.target is required"),
  );
  assert.throws(
    bad("{not json"),
    (e: unknown) =>
      e instanceof ConfigError && e.message.includes("GATEWAY_CONFIG is not valid JSON"),
  );
  assert.throws(
    bad('{"queueLimt":3}'),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message.includes("GATEWAY_CONFIG.queueLimt is not a known setting"),
  );
  assert.throws(
    bad('{"queueTimeoutMs":0}'),
    (e: unknown) => e instanceof ConfigError && e.message.includes("GATEWAY_CONFIG.queueTimeoutMs"),
  );
  assert.throws(
    bad('{"limitMode":"none"}'),
    (e: unknown) => e instanceof ConfigError && e.message.includes("limitMode"),
  );
  assert.throws(
    bad('{"services":{"groq":{"streamRelay":"fast"}}}'),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message.includes(
        'GATEWAY_CONFIG.services.groq.streamRelay must be one of observe, native (got "fast")',
      ),
  );
  assert.throws(
    bad('{"drainMs":0}'),
    (e: unknown) => e instanceof ConfigError && e.message.includes("GATEWAY_CONFIG.drainMs"),
  );
  assert.throws(
    bad('{"expectedInstances":0.5}'),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message.includes("GATEWAY_CONFIG.expectedInstances must be a positive integer (got 0.5)"),
  );
  assert.throws(
    () => loadConfig(env({ PORT: "http" })),
    (e: unknown) => e instanceof ConfigError && e.message.includes("PORT"),
  );
});

Deno.test("a body budget smaller than maxBodyBytes is refused at start-up: such a body could never be held", () => {
  const load = (cfg: unknown) => () => loadConfig(env({ GATEWAY_CONFIG: JSON.stringify(cfg) }));
  assert.throws(
    load({ maxBodyBytes: 256 * 1024 * 1024 }),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message.includes(
        "GATEWAY_CONFIG.bodyBudgetBytes (201326592) must be at least maxBodyBytes (268435456)",
      ),
  );
  assert.throws(
    load({ bodyBudgetBytes: 1000, maxBodyBytes: 1001 }),
    (e: unknown) => e instanceof ConfigError && e.message.includes("bodyBudgetBytes (1000)"),
  );
  assert.equal(load({ bodyBudgetBytes: 1000, maxBodyBytes: 1000 })().bodyBudgetBytes, 1000);
});

Deno.test("a bad config makes `deno task start` exit with the message, before serving", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", "main.ts"],
    env: { GATEWAY_CONFIG: '{"services":{"groq":{"rps":0}}}', KV_PATH: ":memory:", PORT: "0" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.deepEqual(out.code, 1);
  assert(
    new TextDecoder().decode(out.stderr).includes(
      "GATEWAY_CONFIG.services.groq.rps must be a positive number",
    ),
  );
});

Deno.test("M2/L10: a password, ADMIN_PASSWORD or METRICS_TOKEN under 20 characters is refused at start-up with one line that never shows it", () => {
  for (const name of ["ACCESS_PASSWORD", "ADMIN_PASSWORD", "METRICS_TOKEN"]) {
    let message = "";
    try {
      loadConfig(env({ [name]: "hunter2-short" }));
    } catch (e) {
      assert(e instanceof ConfigError);
      message = e.message;
    }
    assert(message.startsWith(`${name} must be at least 20 characters (got 13)`), message);
    assert(!message.includes("hunter2"), "the secret is not echoed");
    assert(!message.includes("\n"), "one line");
  }
  const ok = loadConfig(env({
    ACCESS_PASSWORD: "client-password-0123456789",
    ADMIN_PASSWORD: "admin-password-0123456789",
    METRICS_TOKEN: "scrape-token-0123456789",
  }));
  assert.deepEqual(ok.adminPassword, "admin-password-0123456789");
  assert.throws(
    () =>
      loadConfig(env({
        ACCESS_PASSWORD: "same-password-0123456789",
        ADMIN_PASSWORD: "same-password-0123456789",
      })),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message.includes("ADMIN_PASSWORD must differ from ACCESS_PASSWORD"),
  );
});

Deno.test("L9: a config that is not JSON is reported by position, never by quoting it", () => {
  let message = "";
  try {
    loadConfig(
      env({ GATEWAY_CONFIG: '{"teams":{"ops":{"token":tok-EXAMPLE-SECRET-0123456789}}}' }),
    );
  } catch (e) {
    message = (e as Error).message;
  }
  assert(message.startsWith("GATEWAY_CONFIG is not valid JSON"), message);
  assert(!message.includes("tok-"), `no part of the config in "${message}"`);
});
