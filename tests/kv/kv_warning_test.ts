import assert from "node:assert/strict";
import { kvWarning, parseKvPath } from "../../kv/mod.ts";

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
