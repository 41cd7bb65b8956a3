/**
 * No team holds every slot (security review M6): a team with no limits of
 * its own holds at most `maxConn − 1` in flight, so its streams — relayed
 * natively, which nothing can time out, or stalled by a client that stopped
 * reading — never block another team.
 */
import assert from "node:assert/strict";
import { defaultTeamLimits } from "../../teams/mod.ts";
import { FakeClock, passes, settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import { endlessStream, gatewayOver, inProcessGateway, jsonAnswer } from "../support/in_process.ts";

const ALPHA = "alpha-token-0123456789abcdef";
const BETA = "beta-token-0123456789abcdefg";

/** A connection whose answer is never over: the client stopped reading. */
const stalled = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
  completed: new Promise<void>(() => {}),
} as Deno.ServeHandlerInfo;

Deno.test("defaultTeamLimits(): one slot fewer than the service's; none where maxConn is 1", () => {
  assert.deepEqual(defaultTeamLimits({ rps: 5, burst: 10, maxConn: 4 }), {
    rps: 5,
    burst: 10,
    maxConn: 3,
  });
  assert.equal(defaultTeamLimits({ rps: 5, burst: 10, maxConn: 1 }), undefined);
});

Deno.test("a team's stalled native streams hold at most maxConn − 1 slots: another team is served at once", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  // Every answer is a stream the upstream never ends.
  const fetch = endlessStream();
  const gateway = await inProcessGateway(
    {
      queueTimeoutMs: 2000,
      teams: { alpha: { token: ALPHA }, beta: { token: BETA } },
      services: {
        openai: {
          target: "http://upstream.test",
          rps: 100,
          burst: 100,
          maxConn: 3,
          streamRelay: "native",
        },
      },
    },
    { OPENAI_API_KEYS: "sk-a" },
    { kv, clock, fetch },
  );
  const chat = (token: string) =>
    new Request("http://gw/openai/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "m", stream: true, messages: [] }),
    });
  try {
    const alpha = [1, 2, 3].map(() => gateway.handler(chat(ALPHA), stalled));
    const held = await settle(clock, Promise.all(alpha.slice(0, 2)));
    assert.deepEqual(held.map((r) => r.status), [200, 200], "alpha holds two of three slots");
    const beta = await settle(clock, gateway.handler(chat(BETA), stalled));
    assert.equal(beta.status, 200, "beta is served at once");
    const third = await settle(clock, alpha[2]);
    assert.equal(third.status, 429, "alpha's third waited for its own slot and gave up");
    assert.equal((await third.json()).error.code, "team_rate_limited");
  } finally {
    await gateway.close();
    kv.close();
  }
});

Deno.test("a team's limits changed while its requests are in flight (admin API): those requests still count against its maxConn", async () => {
  const clock = new FakeClock();
  let inFlight = 0;
  let most = 0;
  const waiting: (() => void)[] = [];
  await using t = await gatewayOver(
    () => {
      most = Math.max(most, ++inFlight);
      return new Promise<Response>((resolve) =>
        waiting.push(() => {
          inFlight--;
          resolve(jsonAnswer(200, { choices: [] }));
        })
      );
    },
    { queueTimeoutMs: 60_000, services: { openai: { rps: 100, burst: 100, maxConn: 5 } } },
    { OPENAI_API_KEYS: "sk-a" },
    { clock },
  );
  const admin = (method: string, path: string, body: unknown) =>
    settle(
      clock,
      t.gateway.handler(
        new Request(`http://gw/_kvgate${path}`, {
          method,
          headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
          body: JSON.stringify(body),
        }),
      ),
    );
  const made = await admin("POST", "/teams", {
    name: "agents",
    limits: { openai: { rps: 100, burst: 100, maxConn: 2 } },
  });
  assert.equal(made.status, 201);
  const { token } = await made.json();
  // Each answer read to its end: its slot goes back then.
  const chat = () =>
    t.gateway.handler(
      new Request("http://gw/openai/v1/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "m", messages: [] }),
      }),
    ).then(async (res) => [res.status, await res.text()] as const);
  const first = chat();
  await passes(clock, 200);
  assert.equal(inFlight, 1);
  const changed = await admin("PATCH", "/teams/agents", {
    limits: { openai: { rps: 50, burst: 50, maxConn: 2 } },
  });
  assert.equal(changed.status, 200);
  const more = [chat(), chat(), chat()];
  await passes(clock, 2000);
  assert.equal(most, 2, "the first request, and one more on the new limits: maxConn 2");
  let done = false;
  const all = Promise.all([first, ...more]).finally(() => done = true);
  // Each answer lets the next request in (a few polls of the slots' record at most).
  for (let step = 0; step < 100 && !done; step++) {
    waiting.shift()?.();
    await passes(clock, 500);
  }
  for (const [status, body] of await all) assert.equal(status, 200, body);
  assert.equal(most, 2, "never more than 2 at once");
});
