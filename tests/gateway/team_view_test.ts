/**
 * The teams made through the admin API, as a request sees them on an
 * instance other than the one that changed them: read before the request
 * is decided whenever the instance's view is too old, so that an instance
 * that slept through a change (no request for minutes: its background work
 * stopped) never lets in a token deleted or rotated meanwhile.
 */
import assert from "node:assert/strict";
import { FakeClock, passes, settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import { gatewayOver, type InProcess, jsonAnswer } from "../support/in_process.ts";

const settings = {
  idleAfterMs: 60_000,
  services: { openai: { target: "http://upstream.test" } },
};

function call(t: InProcess, method: string, path: string, token: string, body?: unknown) {
  const req = new Request(`http://gw${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return settle(t.clock, t.gateway.handler(req), 1).then(async (res) => ({
    status: res.status,
    body: await res.json().catch(() => undefined),
  }));
}

const chat = (t: InProcess, token: string) =>
  call(t, "POST", "/openai/v1/chat/completions", token, { model: "m", messages: [] });

Deno.test("teams deleted, rotated and made on one instance while another slept: its first requests after waking are decided on the teams as they are now", async () => {
  const clock = new FakeClock(Date.UTC(2026, 11, 8, 12));
  await using kv = await Deno.openKv(":memory:");
  const instance = () =>
    gatewayOver(() => jsonAnswer(200, { choices: [] }), settings, { OPENAI_API_KEYS: "sk-a" }, {
      clock,
      kv,
    });
  await using a = await instance();
  await using b = await instance();
  const made = async (name: string) =>
    (await call(a, "POST", "/_kvgate/teams", PASSWORD, { name })).body.token as string;
  const gone = await made("gone");
  const rotated = await made("rotated");
  await passes(clock, 3000);
  assert.equal((await chat(b, gone)).status, 200);
  assert.equal((await chat(b, rotated)).status, 200);
  await passes(clock, 120_000, 5000);
  assert.ok(b.logs.some((l) => l.event === "background_sleep"), "b slept");
  assert.equal((await call(a, "DELETE", "/_kvgate/teams/gone", PASSWORD)).status, 204);
  const renewed = (await call(a, "POST", "/_kvgate/teams/rotated/rotate", PASSWORD)).body.token;
  const fresh = await made("fresh");
  const first = await chat(b, gone);
  assert.equal(first.status, 401, "the deleted team's token, on the request that wakes b");
  assert.equal(first.body.error.code, "invalid_api_key");
  assert.equal((await chat(b, rotated)).status, 401, "the rotated team's old token");
  assert.equal((await chat(b, renewed)).status, 200, "its new one");
  assert.equal((await chat(b, fresh)).status, 200, "a team made while b slept");
  const listed = (await call(b, "GET", "/_kvgate/teams", PASSWORD)).body.teams;
  assert.deepEqual(listed.map((t: { name: string }) => t.name), ["fresh", "rotated"]);
});
