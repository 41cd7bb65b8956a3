import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../config/mod.ts";

const withConfig = (config: unknown) => (n: string) =>
  n === "GATEWAY_CONFIG" ? JSON.stringify(config) : undefined;

const target = (service: string, model: string) => ({ service, model });

Deno.test("config groups: ordered targets, switchAfterMs defaults to 1000; a team may name a group", () => {
  const c = loadConfig(withConfig({
    groups: {
      "llama-70b": {
        targets: [target("cerebras", "llama-3.3-70b"), target("groq", "llama-3.3-70b-versatile")],
      },
      alias: { targets: [target("openai", "gpt-4o-mini")], switchAfterMs: 0 },
    },
    teams: { t: { token: "team-token-0123456789abcdef", services: ["llama-70b"] } },
  }));
  assert.deepEqual(c.groups.map((g) => [g.name, g.targets.length, g.switchAfterMs]), [
    ["llama-70b", 2, 1000],
    ["alias", 1, 0],
  ]);
  assert.deepEqual(c.teams[0].services, ["llama-70b"]);
});

Deno.test("config groups: each mistake is named by its place", () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ groups: [] }, /GATEWAY_CONFIG\.groups must be an object/],
    [{ groups: { g: { targets: [] } } }, /groups\.g\.targets must be a non-empty list/],
    [{ groups: { g: {} } }, /groups\.g\.targets must be a non-empty list/],
    [
      { groups: { g: { targets: [target("nope", "m")] } } },
      /groups\.g\.targets\[0\]\.service names no service: "nope"/,
    ],
    [
      { groups: { g: { targets: [target("groq", "m"), target("claude", "m")] } } },
      /groups\.g\.targets\[1\]\.service claude speaks the anthropic API.*cannot mix them/,
    ],
    [
      { groups: { groq: { targets: [target("cerebras", "m")] } } },
      /groups\.groq: a group may not be named like the service groq/,
    ],
    [
      { groups: { g: { targets: [target("groq", "m"), target("groq", "m")] } } },
      /groups\.g\.targets\[1\] repeats the target groq\/m/,
    ],
    [{ groups: { g: { targets: [{ service: "groq" }] } } }, /groups\.g\.targets\[0\] must be/],
    [
      { groups: { g: { targets: [target("groq", "m")], switchAfterMs: -1 } } },
      /groups\.g\.switchAfterMs must be a non-negative number/,
    ],
    [
      { groups: { g: { targets: [target("groq", "m")], retries: 2 } } },
      /groups\.g\.retries is not a known field/,
    ],
    [{ groups: { "Bad Name": { targets: [target("groq", "m")] } } }, /a group name must match/],
  ];
  for (const [config, message] of cases) {
    assert.throws(() => loadConfig(withConfig(config)), (e: unknown) => {
      assert(e instanceof ConfigError, `${JSON.stringify(config)}: ${e}`);
      assert.match(e.message, message);
      return true;
    });
  }
});
