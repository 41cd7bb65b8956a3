import { assertEquals } from "../support/assert.ts";
import {
  readClientHead,
  relayResponseHeaders,
  upstreamRequestHeaders,
} from "../../gateway/headers.ts";
import { CORS_HEADERS } from "../../gateway/cors.ts";
import { setUpstreamAuth } from "../../gateway/auth.ts";

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
  assertEquals(out.get("x-private"), null);
  assertEquals(out.get("keep-alive"), null);
  assertEquals(out.get("connection"), null);
  assertEquals(out.get("access-control-allow-origin"), "*");
  assertEquals(out.get("x-request-id"), "01ID");
  assertEquals(out.get("x-accel-buffering"), "no", "an event stream is not buffered by proxies");
  assertEquals(out.get("content-encoding"), "gzip", "the label still describes the bytes");
  assertEquals(out.get("x-ratelimit-remaining-requests"), "42");
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
  assertEquals(o.get("authorization"), "Bearer sk-provider");
  assertEquals(o.get("x-api-key"), null);
  assertEquals(o.get("accept-encoding"), "identity");
  assertEquals(o.get("content-type"), "application/json");

  const claude = upstreamRequestHeaders(readClientHead(client));
  setUpstreamAuth(claude, "anthropic", "sk-ant", false);
  const c = new Headers(claude);
  assertEquals(c.get("x-api-key"), "sk-ant");
  assertEquals(c.get("authorization"), null);
  assertEquals(
    c.get("anthropic-version"),
    "2023-06-01",
    "a default version when the client sent none",
  );
  assertEquals(c.get("anthropic-beta"), "tools");
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
  assertEquals(head.authorization, "Bearer pw");
  assertEquals(head.apiKey, "pw2");
  assertEquals(head.googApiKey, "pw3");
  assertEquals(head.contentLength, "12");
  assertEquals(head.forward, [["openai-beta", "assistants=v2"]]);
  const none = readClientHead(new Headers());
  assertEquals([none.authorization, none.apiKey, none.contentLength], [null, null, null]);
});

Deno.test("relayResponseHeaders() reports the length and whether the body is an event stream", () => {
  const json = relayResponseHeaders(
    new Headers({ "content-type": "application/json", "content-length": "42" }),
    "id",
    [],
  );
  assertEquals([json.contentLength, json.eventStream], ["42", false]);
  const sse = relayResponseHeaders(
    new Headers({ "content-type": "text/event-stream" }),
    "id",
    [],
  );
  assertEquals([sse.contentLength, sse.eventStream], [null, true]);
});
