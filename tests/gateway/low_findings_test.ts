/**
 * The review's low findings (security review L2, L4, L6, L11, L13), each
 * pinned in process; L1 and L3 are in handler_test.ts, L7 and L12 in their
 * modules' tests.
 */
import assert from "node:assert/strict";
import { RouteCache } from "../../gateway/stages/route.ts";
import { countTopLevelKey } from "../../gateway/stages/team_stages.ts";
import { loadConfig } from "../../config/mod.ts";
import { settle } from "../support/fake_clock.ts";
import { PASSWORD, startMocked } from "../support/harness.ts";
import { type Answer, gatewayOver } from "../support/in_process.ts";
import { openaiBadKey, providerAnswer } from "../support/provider_answers.ts";

async function setup(answer: Answer, settings: Record<string, unknown> = {}) {
  const openai = { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 10 };
  const t = await gatewayOver(answer, { ...settings, services: { openai } }, {
    OPENAI_API_KEYS: "sk-live-aaaa-1111,sk-live-bbbb-2222",
  });
  const send = async (init: RequestInit & { path?: string; host?: string } = {}) => {
    const headers = new Headers(init.headers);
    if (!headers.has("authorization")) headers.set("authorization", `Bearer ${PASSWORD}`);
    if (init.host) headers.set("host", init.host);
    const req = new Request(`http://gw${init.path ?? "/openai/v1/chat/completions"}`, {
      method: init.method ?? "POST",
      headers,
      body: init.method === "GET" || init.method === "TRACE" ? undefined : (init.body ?? "{}"),
    });
    const res = await settle(t.clock, t.gateway.handler(req));
    return { status: res.status, headers: res.headers, text: await res.text() };
  };
  return Object.assign(t, { send });
}

Deno.test("L2: the provider's cookies, org and project ids and server name never reach the client", async () => {
  await using t = await setup((key, req) => providerAnswer({ keys: [key!] }, req, '{"model":"m"}'));
  const r = await t.send({ body: JSON.stringify({ model: "m", messages: [] }) });
  assert.equal(r.status, 200);
  for (
    const name of [
      "set-cookie",
      "openai-organization",
      "openai-project",
      "anthropic-organization-id",
      "server",
    ]
  ) {
    assert.equal(r.headers.get(name), null, name);
  }
  assert.equal(
    r.headers.get("x-ratelimit-remaining-requests"),
    "59",
    "what SDKs read still passes",
  );
});

Deno.test("L2: a provider's 401 reaches the client in kvgate's words, never quoting the key", async () => {
  await using t = await setup((key) => openaiBadKey(key!));
  const r = await t.send({ body: JSON.stringify({ model: "m", messages: [] }) });
  assert.equal(r.status, 502, "the gateway's keys were refused, not the client's credential");
  const error = JSON.parse(r.text).error;
  assert.equal(error.code, "upstream_key_refused");
  assert.match(error.message, /invalid_api_key/);
  assert.ok(
    !r.text.includes("sk-live") && !r.text.includes("1111") && !r.text.includes("2222"),
    r.text,
  );
});

Deno.test("L4: a Host header holding a path gets nginx's 400 and reaches neither the admin API nor a service", async () => {
  await using t = await setup(() => new Response("{}"));
  for (const host of ["x/_kvgate", "x/openai", "x?y", "x#y", "user@x", "x\\\\y"]) {
    const r = await t.send({ method: "GET", path: "/status", host });
    assert.equal(r.status, 400, host);
    assert.match(r.text, /400 Bad Request[\s\S]*nginx/);
  }
  assert.equal(t.calls.length, 0);
});

Deno.test("L6: only paths up to 256 characters are remembered by the route cache", () => {
  const config = loadConfig((n) => n === "OPENAI_API_KEYS" ? "k" : undefined);
  const cache = new RouteCache(config.services);
  const long = "/openai/v1/" + "a".repeat(60_000);
  const first = cache.route({ path: long, search: "" }, "openai");
  assert.notEqual(
    cache.route({ path: long, search: "" }, "openai"),
    first,
    "not cached: a new route",
  );
  const short = cache.route({ path: "/openai/v1/models", search: "" }, "openai");
  assert.equal(cache.route({ path: "/openai/v1/models", search: "" }, "openai"), short, "cached");
});

Deno.test("L11: TRACE (which fetch refuses to send) is answered 405 before any key is charged", async () => {
  await using t = await startMocked({}, (url) => ({
    services: { openai: { target: url, keys: ["sk-one"], rps: 100, burst: 100, maxConn: 5 } },
  }));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(t.gw.url).port) });
  await conn.write(
    new TextEncoder().encode(
      `TRACE /openai/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PASSWORD}\r\nConnection: close\r\n\r\n`,
    ),
  );
  const buf = new Uint8Array(4096);
  const n = await conn.read(buf);
  conn.close();
  const head = new TextDecoder().decode(buf.subarray(0, n ?? 0));
  assert.match(head, /^HTTP\/1\.1 405/);
  assert.match(head, /method_not_allowed/);
  assert.equal(t.mock.received.length, 0);
  assert.ok(!t.gw.logs.some((l) => l.event === "key_rest"));
});

Deno.test("L13: a team request naming its model twice is refused, whichever one a provider would keep", async () => {
  await using t = await setup(() => new Response("{}"), {
    teams: { narrow: { token: "narrow-token-0123456789", models: ["cheap-*"] } },
  });
  // JSON.parse keeps the last (allowed); a provider whose parser keeps the first would serve the other.
  const twice = '{"model":"expensive-9","messages":[],"model":"cheap-1"}';
  const r = await t.send({
    body: twice,
    headers: { authorization: "Bearer narrow-token-0123456789" },
  });
  assert.equal(r.status, 403);
  assert.equal(t.calls.length, 0);
  assert.equal(countTopLevelKey(twice, "model"), 2);
  assert.equal(countTopLevelKey('{"a":{"model":1},"b":"\\"model\\":","model":2}', "model"), 1);
});
