import assert from "node:assert/strict";
import { requestTarget, route, type RouteResult } from "../../gateway/stages/route.ts";
import { loadConfig } from "../../config/mod.ts";

const config = loadConfig((name) =>
  ({
    GATEWAY_CONFIG: JSON.stringify({
      services: {
        sub: { target: "https://up.example/base/path" },
        gemini: { target: "https://gem.example", style: "gemini" },
      },
    }),
  })[name]
);

function upstreamOf(url: string, dropParams: string[] = []): RouteResult {
  return route(requestTarget(url), config.services, dropParams);
}

Deno.test("requestTarget() splits the raw path and query without normalizing them", () => {
  assert.deepEqual(requestTarget("http://gw.example:8000/sub/v1/chat?x=1&y=2"), {
    path: "/sub/v1/chat",
    search: "?x=1&y=2",
  });
  assert.deepEqual(
    requestTarget("http://gw.example/sub/../../etc/passwd").path,
    "/sub/../../etc/passwd",
  );
  assert.deepEqual(requestTarget("http://gw.example/sub/%2e%2e/x").path, "/sub/%2e%2e/x");
  assert.deepEqual(requestTarget("http://gw.example"), { path: "/", search: "" });
  assert.deepEqual(requestTarget("http://gw.example?q"), { path: "/", search: "?q" });
  assert.deepEqual(requestTarget("http://gw.example/a#frag?not-a-query"), {
    path: "/a",
    search: "",
  });
  assert.deepEqual(requestTarget("http://gw.example/a?q=1#frag"), { path: "/a", search: "?q=1" });
});

Deno.test("route() maps /<service>/rest?query under the target's path, query kept", () => {
  const r = upstreamOf("http://gw/sub/v1/chat/completions?stream=true");
  assert(!("error" in r));
  assert.deepEqual(r.upstream, "https://up.example/base/path/v1/chat/completions?stream=true");
  const bare = upstreamOf("http://gw/sub");
  assert(!("error" in bare));
  assert.deepEqual(bare.upstream, "https://up.example/base/path");
  assert.deepEqual(upstreamOf("http://gw/nope/v1"), { error: "no_service" });
  assert.deepEqual(
    upstreamOf("http://gw/subway/v1"),
    { error: "no_service" },
    "whole segment only",
  );
});

Deno.test("route() refuses every path that could climb above or leave the target", () => {
  for (
    const path of [
      "/sub/../../etc/passwd",
      "/sub/v1/..",
      "/sub/./v1",
      "/sub/%2e%2e/secret",
      "/sub/.%2E/secret",
      "/sub/v1/..%2f..%2fx",
      "/sub/v1/%2fevil",
      "/sub/v1/%5cevil",
      "/sub/v1/\\evil",
      "/sub//evil.example/x",
      "/sub/%zz",
      "/sub/v1/caf\u00e9",
      "/sub/v1/a b",
    ]
  ) {
    const r = upstreamOf(`http://gw${path}`);
    assert("error" in r && r.error === "bad_path", `${path} was routed: ${JSON.stringify(r)}`);
  }
  const r = upstreamOf("http://gw/sub/v1/x?q=caf\u00e9");
  assert("error" in r, "a query with raw non-ASCII is refused too");
});

Deno.test("route() on gemini: /v1 becomes /v1beta/openai, native paths stay, ?key= dropped", () => {
  const openai = upstreamOf("http://gw/gemini/v1/chat/completions?key=secret", ["key"]);
  assert(!("error" in openai));
  assert.deepEqual(openai.upstream, "https://gem.example/v1beta/openai/chat/completions");
  assert.deepEqual(openai.geminiNative, false);
  const native = upstreamOf(
    "http://gw/gemini/v1beta/models/g:generateContent?alt=sse&key=secret",
    ["key"],
  );
  assert(!("error" in native));
  assert.deepEqual(native.upstream, "https://gem.example/v1beta/models/g:generateContent?alt=sse");
  assert.deepEqual(native.geminiNative, true);
});
