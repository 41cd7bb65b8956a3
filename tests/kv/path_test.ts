import assert from "node:assert/strict";
import {
  describeFsError,
  displayKvPath,
  KvPathError,
  parseKvPath,
  prepareKvFile,
} from "../../kv/mod.ts";

const noEnv = (_name: string): string | undefined => undefined;
const withToken = (name: string) => name === "DENO_KV_ACCESS_TOKEN" ? "t0ken" : undefined;

Deno.test("parseKvPath: unset is the platform's KV; :memory:, file paths and KV Connect URLs", () => {
  assert.deepEqual(parseKvPath(undefined, noEnv), { kind: "deploy" });
  assert.deepEqual(parseKvPath(":memory:", noEnv), { kind: "memory" });
  assert.deepEqual(parseKvPath("data/kv.sqlite3", noEnv), {
    kind: "file",
    path: "data/kv.sqlite3",
  });
  assert.deepEqual(parseKvPath("/var/lib/kvgate/kv", noEnv), {
    kind: "file",
    path: "/var/lib/kvgate/kv",
  });
  assert.deepEqual(parseKvPath("http://denokv:4512", withToken), {
    kind: "remote",
    url: "http://denokv:4512",
  });
});

Deno.test("parseKvPath refuses a malformed URL, another scheme, and a URL without its access token", () => {
  const refused = (value: string, env: typeof noEnv, reason: RegExp) =>
    assert.throws(() => parseKvPath(value, env), (e: unknown) => {
      assert(e instanceof KvPathError);
      assert.match(e.message, new RegExp(`^KV_PATH "${value.replace(/[[\]]/g, "\\$&")}"`));
      assert.match(e.message, reason);
      return true;
    });
  refused("http://[::1", withToken, /not a valid URL/);
  refused("https://", withToken, /not a valid URL/);
  refused("ftp://kv/db", withToken, /only http\(s\)/);
  refused("http://denokv:4512", noEnv, /DENO_KV_ACCESS_TOKEN/);
});

Deno.test("prepareKvFile makes the missing directories and the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await prepareKvFile(`${dir}/a/b/kv.sqlite3`);
    assert((await Deno.stat(`${dir}/a/b/kv.sqlite3`)).isFile);
    await assert.rejects(prepareKvFile(dir), /KV_PATH ".*" cannot be used: it is a directory/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepareKvFile says why a path cannot be used: permission, read-only, not a directory", async () => {
  const failing = (e: Error) => ({
    mkdir: () => Promise.reject(e),
    stat: () => Promise.reject(e),
    touch: () => Promise.reject(e),
  });
  const cases: Array<[Error, RegExp]> = [
    [new Deno.errors.PermissionDenied("Permission denied (os error 13)"), /permission denied$/],
    [new Error("Read-only file system (os error 30)"), /the file system is read-only$/],
    [new Deno.errors.NotADirectory("Not a directory (os error 20)"), /is a file, not a directory$/],
    [new Deno.errors.AlreadyExists("File exists (os error 17)"), /is a file, not a directory$/],
  ];
  for (const [error, reason] of cases) {
    await assert.rejects(prepareKvFile("/srv/kv/kv.sqlite3", failing(error)), (e: unknown) => {
      assert(e instanceof KvPathError);
      assert.match(e.message, /^KV_PATH "\/srv\/kv\/kv.sqlite3" cannot be used: /);
      assert.match(e.message, reason);
      return true;
    });
  }
  assert.match(describeFsError(new Deno.errors.NotCapable("Requires write access")), /Deno/);
});

Deno.test("displayKvPath hides a URL's user and password, and leaves paths alone", () => {
  assert.equal(displayKvPath("https://user:s3cret@kv.example/db"), "https://***@kv.example/db");
  assert.equal(displayKvPath("http://denokv:4512"), "http://denokv:4512");
  assert.equal(displayKvPath("/var/lib/kv@2/kv.sqlite3"), "/var/lib/kv@2/kv.sqlite3");
  const e = new KvPathError("ftp://me:pw@host/db", "no");
  assert(!e.message.includes("pw"), e.message);
});
