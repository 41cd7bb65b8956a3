/**
 * The background lifecycle: the instance's timers run while requests come,
 * sleep after `idleAfterMs` without any (none in flight either), and wake
 * with the next request. Asleep, an instance makes no KV call.
 */
import assert from "node:assert/strict";
import type { Gateway } from "../../gateway/mod.ts";
import { Lifecycle } from "../../gateway/lifecycle.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { faultyKv, type KvFaults } from "../support/faulty_kv.ts";
import { chatRequest, fakeUpstream, inProcessGateway, jsonAnswer } from "../support/in_process.ts";

Deno.test("lifecycle: parts start once, sleep after idleMs without a request, wake with the next; a busy instance never sleeps", async () => {
  const clock = new FakeClock();
  const events: string[] = [];
  let busy = false;
  const life = new Lifecycle({ clock, idleMs: 60_000, busy: () => busy });
  life.add({
    name: "a",
    start: () => void events.push("start"),
    stop: () => void events.push("stop"),
  });
  life.start();
  await clock.advance(30_000);
  life.touch(clock.now());
  await clock.advance(59_000);
  assert.deepEqual(events, ["start"], "a request 59 s ago keeps it awake");
  await clock.advance(2_000);
  assert.deepEqual(events, ["start", "stop"]);
  assert.equal(clock.pending, 0, "asleep, no timer is left");
  life.touch(clock.now());
  await clock.advance(0);
  assert.deepEqual(events, ["start", "stop", "start"]);
  busy = true; // a long stream: no new request, but one in flight
  await clock.advance(300_000);
  assert.deepEqual(events, ["start", "stop", "start"]);
  busy = false;
  await clock.advance(61_000);
  assert.deepEqual(events, ["start", "stop", "start", "stop"]);
  await life.close();
  assert.deepEqual(
    events,
    ["start", "stop", "start", "stop"],
    "closing a sleeping one stops nothing twice",
  );
});

Deno.test("lifecycle: KV back → every part writes what it kept; the end stops the loops, then closes the parts in the order they were added, once; settled waits for every part's writes", async () => {
  const clock = new FakeClock();
  const events: string[] = [];
  const life = new Lifecycle({ clock, idleMs: 60_000 });
  const wait = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
  let written = false;
  for (const name of ["loop", "holder", "presence"]) {
    life.add({
      name,
      start: () => void events.push(`${name}:start`),
      stop: () => void events.push(`${name}:stop`),
      rejoin: name === "loop" ? undefined : () => void events.push(`${name}:rejoin`),
      // The holder's hand-back takes a while: the presence is left only after it.
      close: name === "loop" ? undefined : async () => {
        if (name === "holder") await wait(100);
        events.push(`${name}:close`);
      },
      settled: name === "holder" ? () => wait(50).then(() => written = true) : undefined,
    });
  }
  life.start();
  await clock.advance(0);
  life.rejoin();
  assert.deepEqual(events.slice(3), ["holder:rejoin", "presence:rejoin"]);
  events.length = 0;
  const closed = life.close();
  const again = life.close();
  await clock.advance(200);
  await closed;
  await again;
  assert.deepEqual(events, [
    "loop:stop",
    "holder:stop",
    "presence:stop",
    "holder:close",
    "presence:close",
  ]);
  const settled = life.settled();
  assert.equal(written, false);
  await clock.advance(50);
  await settled;
  assert.equal(written, true);
});

/** One chat request through the handler, read to its end (until then it is in flight). */
async function served(clock: FakeClock, gw: Gateway): Promise<number> {
  const r = await settle(clock, gw.handler(chatRequest()));
  await r.arrayBuffer();
  return r.status;
}

Deno.test("an idle gateway makes no KV call once idleAfterMs has passed; the next request is served and wakes the heartbeat", async () => {
  const clock = new FakeClock();
  const faults: KvFaults = { latencyMs: 0, failing: false, ops: 0 };
  const base = await Deno.openKv(":memory:");
  const kv = faultyKv(base, faults, clock);
  const upstream = fakeUpstream(() => jsonAnswer(200, { choices: [] }));
  const logs: Record<string, unknown>[] = [];
  const gw = await inProcessGateway(
    {
      idleAfterMs: 60_000,
      teams: { a: { token: "team-a-token-0123456789" } },
      services: { openai: { target: "http://upstream" } },
    },
    { OPENAI_API_KEYS: "sk-one-0123456789" },
    { kv, clock, fetch: upstream.fetch, logs },
  );
  try {
    assert.equal(await served(clock, gw), 200);
    await clock.advance(30_000);
    assert.ok(faults.ops > 0, "awake, it beats and refreshes");
    await clock.advance(35_000);
    faults.ops = 0;
    await clock.advance(600_000);
    assert.equal(faults.ops, 0, "ten idle minutes: no KV call");
    assert.ok(logs.some((l) => l.event === "background_sleep"));
    assert.equal(await served(clock, gw), 200);
    await clock.advance(10_000);
    assert.ok(faults.ops > 0, "woken, it beats again");
    assert.ok(logs.some((l) => l.event === "background_wake"));
  } finally {
    await gw.close();
    base.close();
  }
});
