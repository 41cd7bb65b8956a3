import assert from "node:assert/strict";
import { connectKv, kvWarning, parseKvPath } from "../../kv/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import { inProcessGateway } from "../support/in_process.ts";

const env = () => undefined;

Deno.test("no KV database attached on Deno Deploy is said plainly, with how to attach one", () => {
  const said = kvWarning(parseKvPath(undefined, env), true, false);
  assert.match(said!, /no KV database is attached to this app/);
  assert.match(said!, /Databases → assign/);
});

Deno.test("a file or :memory: KV_PATH on Deno Deploy is one warning that limits are per instance; elsewhere nothing", () => {
  for (const path of [":memory:", "/tmp/kv.sqlite3"]) {
    assert.match(kvWarning(parseKvPath(path, env), true, true)!, /limits hold per instance/);
    assert.equal(kvWarning(parseKvPath(path, env), false, true), undefined);
  }
  assert.equal(kvWarning(parseKvPath(undefined, env), true, true), undefined, "Deploy's own KV");
});

Deno.test("no KV database attached: nothing is tried or logged as kv_degraded, calls fail at once, and the status page says it", async () => {
  const clock = new FakeClock();
  const logged: string[] = [];
  const kv = await connectKv(parseKvPath(undefined, env), {
    clock,
    available: false,
    log: (event) => logged.push(event),
  });
  await clock.advance(120_000);
  assert.equal(kv.status.up, false);
  assert.deepEqual(logged, [], "no stream of kv_degraded");
  assert.throws(() => kv.kv.get(["x"]), /KV unavailable/);
  const warning = kvWarning(parseKvPath(undefined, env), true, false)!;
  const gw = await inProcessGateway({}, { OPENAI_API_KEYS: "sk-one-0123456789" }, {
    kv: kv.kv,
    kvStatus: kv.status,
    kvWarning: warning,
    clock,
  });
  try {
    const r = await settle(
      clock,
      gw.handler(
        new Request("http://gw/_kvgate/status", {
          headers: { authorization: `Bearer ${PASSWORD}` },
        }),
      ),
    );
    const status = await r.json();
    assert.equal(status.kvWarning, warning);
    assert.equal(status.kvDegraded, true);
  } finally {
    await gw.close();
    kv.close();
  }
});
