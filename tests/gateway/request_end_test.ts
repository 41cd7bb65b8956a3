/**
 * The request's one end, in process on the fake clock: however a request
 * ends — an answer, a stream read to its end, retries exhausted, every key
 * refused, no upstream, the client gone — it is accounted once (one log
 * line) and what it held goes back: the service's only slot and the team's
 * only slot are free for the next request at once.
 */
import assert from "node:assert/strict";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { inProcessGateway } from "../support/in_process.ts";

const TEAM = "team-token-request-end-0123456789";
const OK = { id: "c", choices: [{ message: { role: "assistant", content: "hi" } }] };

type Mode = "json" | "stream" | "500" | "401" | "400" | "network" | "slow";

async function setup() {
  const kv = await Deno.openKv(":memory:");
  const clock = new FakeClock();
  const logs: Record<string, unknown>[] = [];
  let mode: Mode = "json";
  const fetch = ((_input: RequestInfo | URL, init?: RequestInit) => {
    const json = (status: number, body: unknown) =>
      new Response(JSON.stringify(body), {
        status,
        headers: { "content-type": "application/json" },
      });
    switch (mode) {
      case "json":
        return Promise.resolve(json(200, OK));
      case "stream":
        return Promise.resolve(
          new Response('data: {"choices":[]}\n\ndata: [DONE]\n\n', {
            headers: { "content-type": "text/event-stream" },
          }),
        );
      case "500":
        return Promise.resolve(json(500, { error: { message: "boom" } }));
      case "401":
        return Promise.resolve(
          json(401, { error: { message: "bad key", code: "invalid_api_key" } }),
        );
      case "400":
        return Promise.resolve(json(400, { error: { message: "bad request" } }));
      case "network":
        return Promise.reject(new TypeError("connection refused"));
      case "slow":
        // Answers only when the request is aborted (the client left).
        return new Promise<Response>((_, reject) =>
          init?.signal?.addEventListener("abort", () => reject(init.signal!.reason))
        );
    }
  }) as typeof globalThis.fetch;
  const gateway = await inProcessGateway(
    {
      maxRetries: 1,
      queueTimeoutMs: 2000,
      services: { openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 1 } },
      teams: { t: { token: TEAM, limits: { openai: { rps: 100, burst: 100, maxConn: 1 } } } },
    },
    { OPENAI_API_KEYS: "sk-a,sk-b" },
    { kv, clock, fetch, logs, random: () => 0.5 },
  );
  const send = async (signal?: AbortSignal) => {
    const res = await settle(
      clock,
      gateway.handler(
        new Request("http://gw/openai/v1/chat/completions", {
          method: "POST",
          headers: { authorization: `Bearer ${TEAM}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "m", messages: [] }),
          signal,
        }),
      ),
    );
    await settle(clock, res.arrayBuffer().catch(() => undefined));
    return res;
  };
  return {
    clock,
    gateway,
    logs,
    send,
    setMode: (m: Mode) => mode = m,
    close: async () => {
      await gateway.close();
      kv.close();
    },
  };
}

const cases: Array<[Mode, number]> = [
  ["json", 200],
  ["stream", 200],
  ["500", 500],
  ["401", 502],
  ["400", 400],
  ["network", 502],
];

for (const [mode, status] of cases) {
  Deno.test(`request end (${mode} → ${status}): one log line; the service's and the team's only slots are free at once`, async () => {
    const t = await setup();
    try {
      t.setMode(mode);
      const res = await t.send();
      assert.equal(res.status, status);
      const ended = t.logs.filter((l) => "outcome" in l);
      assert.equal(ended.length, 1, "accounted once");
      assert.equal(
        t.gateway.runtimes.get("openai")!.limiter.inFlight,
        0,
        "the service slot is back",
      );
      t.setMode("json");
      const next = await t.send();
      assert.equal(next.status, 200);
      const line = t.logs.filter((l) => "outcome" in l).at(-1)!;
      assert.equal(line.queueMs, 0, "the next request waited for no slot");
    } finally {
      await t.close();
    }
  });
}

Deno.test("request end (the client leaves while the upstream thinks): one log line, both slots free at once", async () => {
  const t = await setup();
  try {
    t.setMode("slow");
    const ac = new AbortController();
    const pending = t.send(ac.signal);
    await t.clock.advance(10);
    ac.abort();
    await pending.catch(() => undefined);
    await t.clock.advance(10);
    assert.equal(t.logs.filter((l) => "outcome" in l).length, 1, "accounted once");
    assert.equal(t.gateway.runtimes.get("openai")!.limiter.inFlight, 0);
    t.setMode("json");
    const next = await t.send();
    assert.equal(next.status, 200);
    assert.equal(t.logs.filter((l) => "outcome" in l).at(-1)!.queueMs, 0);
  } finally {
    await t.close();
  }
});
