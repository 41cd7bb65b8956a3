import assert from "node:assert/strict";
import { kvCall, KvStatus, KvUnavailableError } from "../../kv/mod.ts";
import { FakeClock } from "../support/fake_clock.ts";

function statusWith(probe: () => Promise<unknown>, up = true) {
  const clock = new FakeClock();
  const events: string[] = [];
  const status = new KvStatus({ clock, probe, probeMs: 1000, up, log: (e) => events.push(e) });
  return { clock, events, status };
}

Deno.test("KvStatus: a failure logs kv_degraded once, and a probe that answers brings KV back with kv_recovered once", async () => {
  let answers = false;
  let probes = 0;
  const { clock, events, status } = statusWith(() => {
    probes++;
    return answers ? Promise.resolve() : Promise.reject(new Error("connection refused"));
  });
  let recovered = 0;
  status.onRecovered(() => recovered++);
  status.fail(new Error("database is locked"));
  status.fail(new Error("database is locked"));
  assert.equal(status.up, false);
  await clock.advance(3000);
  assert.equal(probes, 3, "one probe a second while down");
  assert.equal(status.up, false);
  answers = true;
  await clock.advance(1000);
  assert.equal(status.up, true);
  assert.deepEqual(events, ["kv_degraded", "kv_recovered"]);
  assert.equal(recovered, 1, "the recovery hooks ran once");
  await clock.advance(5000);
  assert.equal(probes, 4, "no probes while KV answers");
  status.close();
});

Deno.test("kvCall with a status: fails at once while KV is down, without calling KV", async () => {
  const { status } = statusWith(() => Promise.reject(new Error("down")), false);
  let calls = 0;
  await assert.rejects(
    kvCall(() => Promise.resolve(calls++), { status }),
    KvUnavailableError,
  );
  assert.equal(calls, 0);
  status.close();
});

Deno.test("kvCall takes KV down only after its retries of a transient error, never for a bad call", async () => {
  const { status, events } = statusWith(() => Promise.resolve());
  const sleep = () => Promise.resolve();
  await assert.rejects(
    kvCall(() => Promise.reject(new TypeError("Value too large")), { status, sleep }),
    TypeError,
  );
  assert.equal(status.up, true, "a non-transient error says nothing about KV");
  let attempts = 0;
  await assert.rejects(
    kvCall(() => {
      attempts++;
      return Promise.reject(new Error("database is locked"));
    }, { status, sleep, attempts: 3 }),
    KvUnavailableError,
  );
  assert.equal(attempts, 3);
  assert.equal(status.up, false);
  assert.deepEqual(events, ["kv_degraded"]);
  status.close();
});

Deno.test("KvStatus.waitUp resolves true when KV answers in time, false at the bound", async () => {
  let answers = false;
  const { clock, status } = statusWith(
    () => answers ? Promise.resolve() : Promise.reject(new Error("refused")),
    false,
  );
  const late = status.waitUp(500);
  await clock.advance(600);
  assert.equal(await late, false);
  const inTime = status.waitUp(5000);
  answers = true;
  await clock.advance(1000);
  assert.equal(await inTime, true);
  status.close();
});
