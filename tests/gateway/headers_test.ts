import assert from "node:assert/strict";
import {
  readClientHead,
  relayResponseHeaders,
  upstreamRequestHeaders,
} from "../../gateway/headers.ts";
import { CORS_HEADERS } from "../../gateway/cors.ts";
import { setUpstreamAuth } from "../../gateway/stages/auth.ts";

Deno.test("relayResponseHeaders() drops hop-by-hop and the upstream's CORS and id, adds kvgate's once", () => {
  const upstream = new Headers({
    "content-type": "text/event-stream; charset=utf-8",
    "content-encoding": "gzip",
    "connection": "keep-alive, x-private",
    "x-private": "hop",
    "keep-alive": "timeout=5",
    "access-control-allow-origin": "https://evil.example",
    "x-request-id": "req_upstream",
    "x-ratelimit-remaining-requests": "42",
  });
  const out = new Headers(relayResponseHeaders(upstream, "01ID", CORS_HEADERS).headers);
  assert.deepEqual(out.get("x-private"), null);
  assert.deepEqual(out.get("keep-alive"), null);
  assert.deepEqual(out.get("connection"), null);
  assert.deepEqual(out.get("access-control-allow-origin"), "*");
  assert.deepEqual(out.get("x-request-id"), "01ID");
  assert.deepEqual(
    out.get("x-accel-buffering"),
    "no",
    "an event stream is not buffered by proxies",
  );
  assert.deepEqual(out.get("content-encoding"), "gzip", "the label still describes the bytes");
  assert.deepEqual(out.get("x-ratelimit-remaining-requests"), "42");
});

Deno.test("upstreamRequestHeaders() + setUpstreamAuth(): no client credential, the provider key where it belongs", () => {
  const client = new Headers({
    authorization: "Bearer gateway-password",
    "x-api-key": "gateway-password",
    "content-type": "application/json",
    "anthropic-beta": "tools",
    "accept-encoding": "gzip, br",
  });
  const openai = upstreamRequestHeaders(readClientHead(client));
  setUpstreamAuth(openai, "openai", "sk-provider", false);
  const o = new Headers(openai);
  assert.deepEqual(o.get("authorization"), "Bearer sk-provider");
  assert.deepEqual(o.get("x-api-key"), null);
  assert.deepEqual(o.get("accept-encoding"), "identity");
  assert.deepEqual(o.get("content-type"), "application/json");

  const claude = upstreamRequestHeaders(readClientHead(client));
  setUpstreamAuth(claude, "anthropic", "sk-ant", false);
  const c = new Headers(claude);
  assert.deepEqual(c.get("x-api-key"), "sk-ant");
  assert.deepEqual(c.get("authorization"), null);
  assert.deepEqual(
    c.get("anthropic-version"),
    "2023-06-01",
    "a default version when the client sent none",
  );
  assert.deepEqual(c.get("anthropic-beta"), "tools");
});

Deno.test("readClientHead() reads credentials and length in one pass; forwards none of them", () => {
  const head = readClientHead(
    new Headers({
      authorization: "Bearer pw",
      "x-api-key": "pw2",
      "x-goog-api-key": "pw3",
      "content-length": "12",
      connection: "keep-alive, x-hop",
      "x-hop": "1",
      host: "gw.example",
      "openai-beta": "assistants=v2",
    }),
  );
  assert.deepEqual(head.authorization, "Bearer pw");
  assert.deepEqual(head.apiKey, "pw2");
  assert.deepEqual(head.googApiKey, "pw3");
  assert.deepEqual(head.contentLength, "12");
  assert.deepEqual(head.forward, [["openai-beta", "assistants=v2"]]);
  const none = readClientHead(new Headers());
  assert.deepEqual([none.authorization, none.apiKey, none.contentLength], [null, null, null]);
});

Deno.test("relayResponseHeaders() reports the length and whether the body is an event stream", () => {
  const json = relayResponseHeaders(
    new Headers({ "content-type": "application/json", "content-length": "42" }),
    "id",
    [],
  );
  assert.deepEqual([json.contentLength, json.eventStream], ["42", false]);
  const sse = relayResponseHeaders(
    new Headers({ "content-type": "text/event-stream" }),
    "id",
    [],
  );
  assert.deepEqual([sse.contentLength, sse.eventStream], [null, true]);
});
