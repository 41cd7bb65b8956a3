import { assert, assertEquals, assertThrows } from "../support/assert.ts";
import { ConfigError, loadConfig, parseKeyList } from "../../config/mod.ts";

const env = (vars: Record<string, string>) => (n: string) => vars[n];

Deno.test("loadConfig() has the built-in services with the documented defaults", () => {
  const c = loadConfig(env({}));
  assertEquals(c.services.cerebras.target, "https://api.cerebras.ai");
  assertEquals([c.services.cerebras.rps, c.services.cerebras.burst, c.services.cerebras.maxConn], [
    4,
    8,
    6,
  ]);
  assertEquals([c.services.claude.rps, c.services.claude.burst, c.services.claude.maxConn], [
    2,
    2,
    1,
  ]);
  assertEquals(c.services.claude.envKey, "CLAUDE_API_KEYS");
  assertEquals(c.services.groq.target, "https://api.groq.com/openai");
  assertEquals(Object.keys(c.services).length, 12);
  assertEquals(c.queueLimit, 200);
  assertEquals(c.queueTimeoutMs, 60_000);
  assertEquals(c.maxRetries, 2);
  assertEquals(c.maxBodyBytes, 32 * 1024 * 1024);
  assertEquals(c.port, 8000);
  assertEquals(c.password, undefined);
  assert(c.kvPath?.startsWith("./data/"));
  assertEquals([c.drainMs, c.expectedInstances], [4000, 1]);
  assertEquals(c.services.groq.streamRelay, "native");
});

Deno.test("parseKeyList() splits on commas and newlines, trims, drops empties and duplicates", () => {
  assertEquals(parseKeyList(" k1, k2\nk3\r\n,,k1 \n"), ["k1", "k2", "k3"]);
  assertEquals(parseKeyList(undefined), []);
});

Deno.test("GATEWAY_CONFIG overrides any field and adds new OpenAI-compatible services", () => {
  const c = loadConfig(env({
    GATEWAY_CONFIG: JSON.stringify({
      queueLimit: 5,
      services: { groq: { rps: 2 }, myllm: { target: "http://127.0.0.1:9999/api/" } },
    }),
    MYLLM_API_KEYS: "x,y",
  }));
  assertEquals(c.services.groq.rps, 2);
  assertEquals(c.services.groq.burst, 3);
  assertEquals(c.services.myllm.target, "http://127.0.0.1:9999/api");
  assertEquals(c.services.myllm.keys, ["x", "y"]);
  assertEquals(c.services.myllm.style, "openai");
  assertEquals(c.queueLimit, 5);
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
  assertEquals(c.maxRetries, 4);
  assertEquals(c.services.openai.rps, 1);
  assertEquals(c.services.openai.burst, 9);
});

Deno.test("invalid configuration stops start-up with one message naming the service and field", () => {
  const bad = (cfg: string) => () => loadConfig(env({ GATEWAY_CONFIG: cfg }));
  assertThrows(
    bad('{"services":{"groq":{"rsp":1}}}'),
    ConfigError,
    "GATEWAY_CONFIG.services.groq.rsp is not a known field",
  );
  assertThrows(
    bad('{"services":{"groq":{"rps":-1}}}'),
    ConfigError,
    "GATEWAY_CONFIG.services.groq.rps must be a positive number (got -1)",
  );
  assertThrows(bad('{"services":{"groq":{"maxConn":0}}}'), ConfigError, "services.groq.maxConn");
  assertThrows(
    bad('{"services":{"x":{"target":"ftp://a"}}}'),
    ConfigError,
    "services.x.target must be an absolute http(s) URL",
  );
  assertThrows(bad('{"services":{"x":{"target":"/relative"}}}'), ConfigError, "services.x.target");
  assertThrows(bad('{"services":{"x":{"rps":1}}}'), ConfigError, "services.x.target is required");
  assertThrows(bad("{not json"), ConfigError, "GATEWAY_CONFIG is not valid JSON");
  assertThrows(
    bad('{"queueLimt":3}'),
    ConfigError,
    "GATEWAY_CONFIG.queueLimt is not a known setting",
  );
  assertThrows(bad('{"queueTimeoutMs":0}'), ConfigError, "GATEWAY_CONFIG.queueTimeoutMs");
  assertThrows(bad('{"limitMode":"none"}'), ConfigError, "limitMode");
  assertThrows(
    bad('{"services":{"groq":{"streamRelay":"fast"}}}'),
    ConfigError,
    'GATEWAY_CONFIG.services.groq.streamRelay must be one of observe, native (got "fast")',
  );
  assertThrows(bad('{"drainMs":0}'), ConfigError, "GATEWAY_CONFIG.drainMs");
  assertThrows(
    bad('{"expectedInstances":0.5}'),
    ConfigError,
    "GATEWAY_CONFIG.expectedInstances must be a positive integer (got 0.5)",
  );
  assertThrows(() => loadConfig(env({ PORT: "http" })), ConfigError, "PORT");
});

Deno.test("a bad config makes `deno task start` exit with the message, before serving", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", "main.ts"],
    env: { GATEWAY_CONFIG: '{"services":{"groq":{"rps":0}}}', KV_PATH: ":memory:", PORT: "0" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 1);
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
  assertEquals(ok.adminPassword, "admin-password-0123456789");
  assertThrows(
    () =>
      loadConfig(env({
        ACCESS_PASSWORD: "same-password-0123456789",
        ADMIN_PASSWORD: "same-password-0123456789",
      })),
    ConfigError,
    "ADMIN_PASSWORD must differ from ACCESS_PASSWORD",
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
