/**
 * A team's scope covers endpoints (security review M5): by default a team
 * reaches the inference endpoints and model lists only, never the key
 * owner's files, batches, stored responses or organization endpoints.
 */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../config/mod.ts";
import { endpointAllowed } from "../../teams/mod.ts";
import { settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import { gatewayOver, jsonAnswer } from "../support/in_process.ts";

const ALPHA = "alpha-token-0123456789abcdef";
const FILES = "files-token-0123456789abcdef";
const ALL = "every-token-0123456789abcdef";

async function setup() {
  const t = await gatewayOver(
    () => jsonAnswer(200, { object: "list", data: [] }),
    {
      teams: {
        alpha: { token: ALPHA },
        files: { token: FILES, paths: ["GET /v1/files", "POST /v1/chat/completions"] },
        every: { token: ALL, paths: ["*"] },
      },
      services: {
        openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 10 },
        gemini: { target: "http://gemini.test", style: "gemini" },
      },
    },
    { OPENAI_API_KEYS: "sk-a", GEMINI_API_KEYS: "gk-a" },
  );
  const send = async (token: string, method: string, path: string) => {
    const body = method === "POST" ? JSON.stringify({ model: "m", contents: [] }) : undefined;
    const req = new Request(`http://gw${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body,
    });
    const res = await settle(t.clock, t.gateway.handler(req));
    return { status: res.status, text: await res.text() };
  };
  return Object.assign(t, { send });
}

Deno.test("M5: a team with no paths reaches inference and model lists, and gets 403 on files, batches, stored objects and organization endpoints", async () => {
  await using t = await setup();
  const allowed: [string, string][] = [
    ["POST", "/openai/v1/chat/completions"],
    ["POST", "/openai/v1/embeddings"],
    ["POST", "/openai/v1/responses"],
    ["GET", "/openai/v1/models"],
    ["GET", "/gemini/v1beta/models"],
    ["POST", "/gemini/v1beta/models/gemini-2.5-flash:generateContent"],
    ["POST", "/gemini/v1/chat/completions"],
  ];
  for (const [method, path] of allowed) {
    assert.equal((await t.send(ALPHA, method, path)).status, 200, `${method} ${path}`);
  }
  const before = t.calls.length;
  const refused: [string, string][] = [
    ["GET", "/gemini/v1beta/files"],
    ["DELETE", "/gemini/v1beta/files/uploaded-by-another-team"],
    ["GET", "/gemini/v1beta/cachedContents"],
    ["GET", "/openai/v1/files"],
    ["GET", "/openai/v1/organization/users"],
    ["POST", "/openai/v1/batches"],
    ["GET", "/openai/v1/responses/resp_123"],
    ["DELETE", "/openai/v1/models/ft-mine"],
  ];
  for (const [method, path] of refused) {
    const r = await t.send(ALPHA, method, path);
    assert.equal(r.status, 403, `${method} ${path}`);
    const error = JSON.parse(r.text).error;
    assert.equal(error.code, "team_forbidden");
    assert.ok(error.message.includes(method), error.message);
  }
  assert.equal(t.calls.length, before, "nothing refused reached the provider");
});

Deno.test("M5: a team's own paths widen or narrow its scope; the password has every endpoint", async () => {
  await using t = await setup();
  assert.equal((await t.send(FILES, "GET", "/openai/v1/files")).status, 200);
  assert.equal((await t.send(FILES, "DELETE", "/openai/v1/files/x")).status, 403);
  assert.equal((await t.send(FILES, "POST", "/openai/v1/embeddings")).status, 403);
  assert.equal((await t.send(ALL, "DELETE", "/openai/v1/files/x")).status, 200);
  assert.equal((await t.send(PASSWORD, "GET", "/openai/v1/organization/users")).status, 200);
});

Deno.test('endpointAllowed(): a pattern without a method is GET and POST; * matches any run; "*" alone is everything', () => {
  assert.equal(endpointAllowed(["/v1/files*"], "GET", "/v1/files/x"), true);
  assert.equal(endpointAllowed(["/v1/files*"], "DELETE", "/v1/files/x"), false);
  assert.equal(endpointAllowed(["* /v1/files*"], "DELETE", "/v1/files/x"), true);
  assert.equal(endpointAllowed(["*"], "PATCH", "/anything"), true);
  assert.equal(
    endpointAllowed(["POST /v1/chat/completions"], "POST", "/v1/chat/completions/x"),
    false,
  );
});

Deno.test("paths: each entry is validated with the field named", () => {
  const env = (teams: unknown) => (n: string) =>
    n === "GATEWAY_CONFIG" ? JSON.stringify({ teams }) : undefined;
  assert.throws(
    () => loadConfig(env({ t: { token: ALPHA, paths: ["files"] } })),
    (e) => e instanceof ConfigError && /teams\.t\.paths entries must be/.test(e.message),
  );
  assert.throws(
    () => loadConfig(env({ t: { token: ALPHA, paths: [] } })),
    (e) => e instanceof ConfigError && /teams\.t\.paths must be a non-empty list/.test(e.message),
  );
});
