/**
 * No team holds every slot (security review M6): a team with no limits of
 * its own holds at most `maxConn − 1` in flight, so its streams — relayed
 * natively, which nothing can time out, or stalled by a client that stopped
 * reading — never block another team.
 */
import assert from "node:assert/strict";
import { defaultTeamLimits } from "../../teams/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { endlessStream, inProcessGateway } from "../support/in_process.ts";

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
