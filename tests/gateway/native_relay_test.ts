/**
 * `streamRelay: "native"`: a stream handed to the runtime as it is, over
 * real sockets (the server's `info.completed` says when it is over).
 */
import assert from "node:assert/strict";
import { auth, chatBody, startMocked } from "../support/harness.ts";

const setup = () =>
  startMocked({ chunks: 8, chunkDelayMs: 100 }, (url) => ({
    services: {
      openai: {
        target: url,
        keys: ["sk-one"],
        rps: 100,
        burst: 100,
        maxConn: 1,
        streamRelay: "native",
      },
    },
  }));

const stream = (url: string, signal?: AbortSignal) =>
  fetch(`${url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody({ stream: true }),
    signal,
  });

Deno.test("native stream relay: the bytes pass whole, and the slot is held to the last byte", async () => {
  await using t = await setup();
  const t0 = Date.now();
  const first = await stream(t.gw.url);
  const firstText = first.text().then((text) => ({ text, at: Date.now() - t0 }));
  await new Promise((r) => setTimeout(r, 200));
  const second = await stream(t.gw.url);
  const secondHeadersAt = Date.now() - t0;
  const { text, at: firstEnd } = await firstText;
  await second.text();
  assert(text.endsWith("data: [DONE]\n\n"), "the whole stream");
  assert.equal(text.split("\n\n").filter((e) => e.startsWith("data:")).length, 10);
  assert(
    secondHeadersAt >= firstEnd - 50,
    `maxConn 1: the second stream began at ${secondHeadersAt} ms, the first ended at ${firstEnd} ms`,
  );
  const lines = t.gw.logs.filter((l) => l.outcome === "native");
  assert.equal(lines.length, 2, "each logged once it was over");
});

Deno.test("native stream relay: a client that leaves frees the slot at once and the upstream sees the connection closed", async () => {
  await using t = await setup();
  const ac = new AbortController();
  const r = await stream(t.gw.url, ac.signal);
  const reader = r.body!.getReader();
  await reader.read();
  ac.abort();
  await reader.cancel().catch(() => {});
  for (let i = 0; i < 100 && t.mock.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(t.mock.inFlight, 0, "the upstream stream was closed");
  const t1 = Date.now();
  const next = await fetch(`${t.gw.url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody(),
  });
  await next.text();
  assert.equal(next.status, 200);
  assert(Date.now() - t1 < 500, `the slot came back at once (${Date.now() - t1} ms)`);
});
