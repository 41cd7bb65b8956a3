import assert from "node:assert/strict";
import { keyId } from "../../keys/mod.ts";
import { connectKv, keyHealthKey } from "../../kv/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { chatRequest, fakeUpstream, inProcessGateway, jsonAnswer } from "../support/in_process.ts";

const OK_BODY = { id: "c", choices: [{ message: { role: "assistant", content: "hi" } }] };

Deno.test("KV down from start-up: the gateway proxies at its safe share, keeps key health in memory, and writes it to KV when KV comes back", async () => {
  const clock = new FakeClock();
  const store = await Deno.openKv(":memory:");
  let kvReachable = false;
  const conn = await (async () => {
    const c = connectKv({ kind: "remote", url: "http://denokv:4512" }, {
      clock,
      startWaitMs: 1000,
      open: () =>
        kvReachable ? Promise.resolve(store) : Promise.reject(new TypeError("connection refused")),
    });
    await clock.advance(1000);
    return await c;
  })();
  const upstream = fakeUpstream((key) =>
    key === "sk-bad" ? jsonAnswer(401, { error: { message: "bad key" } }) : jsonAnswer(200, OK_BODY)
  );
  const logs: Record<string, unknown>[] = [];
  // Two instances expected: each takes half of burst 6 while it has never seen KV.
  const gateway = await inProcessGateway(
    {
      expectedInstances: 2,
      services: { openai: { target: "http://upstream.test", rps: 1, burst: 6, maxConn: 10 } },
    },
    { OPENAI_API_KEYS: "sk-bad,sk-good" },
    { kv: conn.kv, kvStatus: conn.status, clock, fetch: upstream.fetch, logs },
  );
  try {
    const answers = await settle(
      clock,
      Promise.all([1, 2].map(() => gateway.handler(chatRequest()))),
    );
    assert.deepEqual(answers.map((r) => r.status), [200, 200]);
    await Promise.all(answers.map((r) => r.body?.cancel()));
    // sk-bad answered 401 once and rests; the rest went to sk-good.
    const chats = upstream.calls.filter((c) => c.path.endsWith("/chat/completions"));
    assert.deepEqual(chats.map((c) => c.key), ["sk-bad", "sk-good", "sk-good"]);
    // The local share of burst 6 over 2 instances is 3, all spent (a retry takes a token):
    // the next request waits for a token, at the share's rate of 0.5/s.
    let third: Response | undefined;
    const pending = gateway.handler(chatRequest()).then((r) => third = r);
    await clock.advance(100);
    assert.equal(third, undefined, "past the local share, a request waits: never unlimited");
    await settle(clock, pending, 100);
    assert.equal(third!.status, 200);
    await third!.body?.cancel();

    kvReachable = true;
    for (let i = 0; i < 5 && !conn.status.up; i++) await clock.advance(1000);
    assert.equal(conn.status.up, true);
    const id = await keyId("sk-bad");
    let health: unknown;
    for (let i = 0; i < 50 && !health; i++) {
      await clock.advance(10);
      health = (await store.get(keyHealthKey("openai", id))).value;
    }
    assert.equal((health as { state: string }).state, "disabled", "written to KV on recovery");
    const events = logs.map((l) => l.event).filter((e) =>
      typeof e === "string" && e.startsWith("kv_")
    );
    assert.deepEqual(
      events,
      [],
      "the gateway's own log has no KV events: connectKv logs them, once",
    );
  } finally {
    await gateway.close();
    conn.close();
  }
});
