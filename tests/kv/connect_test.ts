import assert from "node:assert/strict";
import { connectKv, kvCall, KvUnavailableError } from "../../kv/mod.ts";
import { FakeClock } from "../support/fake_clock.ts";

/** An opener that refuses until `ready` is set, then opens an in-memory KV. */
function flakyOpen() {
  const state = { ready: false, attempts: 0, opened: [] as Deno.Kv[] };
  const open = async () => {
    state.attempts++;
    if (!state.ready) throw new TypeError("Could not open Deno KV database: connection refused");
    const kv = await Deno.openKv(":memory:");
    state.opened.push(kv);
    return kv;
  };
  return { state, open };
}

Deno.test("connectKv: a KV that refuses at start-up gives a handle at once, degraded, that joins KV by itself", async () => {
  const clock = new FakeClock();
  const events: string[] = [];
  const { state, open } = flakyOpen();
  const connecting = connectKv({ kind: "remote", url: "http://127.0.0.1:1" }, {
    clock,
    open,
    startWaitMs: 2000,
    log: (e) => events.push(e),
  });
  await clock.advance(2000);
  const conn = await connecting;
  assert.equal(conn.status.up, false);
  assert.deepEqual(events, ["kv_degraded"]);
  await assert.rejects(
    kvCall(() => conn.kv.get(["x"]), { status: conn.status }),
    KvUnavailableError,
  );
  const before = state.attempts;
  await clock.advance(3000);
  assert(state.attempts >= before + 2, "it keeps trying in the background");
  state.ready = true;
  await clock.advance(1000);
  assert.equal(conn.status.up, true);
  assert.deepEqual(events, ["kv_degraded", "kv_recovered"]);
  await kvCall(() => conn.kv.set(["x"], 1), { status: conn.status });
  assert.equal((await conn.kv.get(["x"])).value, 1, "the handle now reaches the database");
  conn.close();
});

Deno.test("connectKv: an open that hangs does not hold start-up, and is used once it finishes", async () => {
  const clock = new FakeClock();
  let finish: (kv: Deno.Kv) => void = () => {};
  let opens = 0;
  const connecting = connectKv({ kind: "remote", url: "http://127.0.0.1:1" }, {
    clock,
    timeoutMs: 500,
    open: () => {
      opens++;
      return new Promise((r) => finish = r);
    },
  });
  await clock.advance(2000);
  const conn = await connecting;
  assert.equal(conn.status.up, false);
  await clock.advance(5000);
  assert.equal(opens, 1, "probes join the open under way rather than opening again");
  finish(await Deno.openKv(":memory:"));
  for (let i = 0; i < 10 && !conn.status.up; i++) await clock.advance(1000);
  assert.equal(conn.status.up, true);
  conn.close();
});

Deno.test("connectKv: a KV that opens and answers at once starts up, with nothing logged", async () => {
  const clock = new FakeClock();
  const events: string[] = [];
  const connecting = connectKv({ kind: "memory" }, { clock, log: (e) => events.push(e) });
  await clock.advance(10);
  const conn = await connecting;
  assert.equal(conn.status.up, true);
  assert.deepEqual(events, []);
  conn.close();
});
