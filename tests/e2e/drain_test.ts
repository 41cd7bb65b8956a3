/**
 * A gateway process stopped by SIGTERM or SIGINT while streams are in
 * flight, started with `deno task start` as the README says: answers in
 * flight run to their end, long ones end cleanly at an event boundary at
 * drainMs, new requests are told to go elsewhere, and the slots go back.
 */
import assert from "node:assert/strict";
import { chatBody, PASSWORD } from "../support/harness.ts";
import { type MockUpstream, startMockUpstream } from "../support/mock_upstream.ts";
import { type GatewayProcess, startGatewayProcess, stopProcesses } from "../support/process.ts";

const headers = { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" };

/** A streamed chat completion, read to its end: what arrived, and how the read ended. */
async function readStream(url: string): Promise<{ text: string; error?: string; endedAt: number }> {
  const r = await fetch(`${url}/openai/v1/chat/completions`, {
    method: "POST",
    headers,
    body: chatBody({ stream: true }),
  });
  assert.deepEqual(r.status, 200);
  const decoder = new TextDecoder();
  let text = "";
  try {
    for await (const chunk of r.body!) text += decoder.decode(chunk, { stream: true });
  } catch (e) {
    return { text, error: String(e), endedAt: Date.now() };
  }
  return { text, endedAt: Date.now() };
}

/** Resolves once the mock has started sending `n` streams. */
async function streamsStarted(mock: MockUpstream, n: number): Promise<void> {
  for (let i = 0; i < 200 && mock.inFlight < n; i++) await new Promise((r) => setTimeout(r, 10));
  assert(mock.inFlight >= n, `the upstream has ${mock.inFlight} streams in flight, not ${n}`);
}

async function withProcesses(
  mockOptions: Parameters<typeof startMockUpstream>[0],
  config: (mockUrl: string) => unknown,
  count: number,
  fn: (mock: MockUpstream, procs: GatewayProcess[]) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const mock = await startMockUpstream(mockOptions);
  const procs: GatewayProcess[] = [];
  try {
    for (let i = 0; i < count; i++) {
      procs.push(
        await startGatewayProcess({ kvPath: `${dir}/kv.sqlite3`, config: config(mock.url) }),
      );
    }
    await fn(mock, procs);
  } finally {
    await stopProcesses(procs);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
}

// Each signal with one relay: the drain waits for an observed stream and for a native one alike.
for (const [signal, relay] of [["SIGTERM", "observe"], ["SIGINT", "native"]] as const) {
  Deno.test(`${signal}: a stream (${relay}) with 2 s left completes whole, and the process exits 0 after it`, async () => {
    await withProcesses(
      { chunks: 19, chunkDelayMs: 100 },
      (target) => ({
        services: { openai: { target, rps: 100, burst: 100, maxConn: 4, streamRelay: relay } },
      }),
      1,
      async (mock, [gw]) => {
        const stream = readStream(gw.url);
        await streamsStarted(mock, 1);
        const t0 = Date.now();
        gw.child.kill(signal);
        const [result, status] = await Promise.all([stream, gw.child.status]);
        const exitedAfter = Date.now() - t0;
        assert.deepEqual(result.error, undefined);
        assert(
          result.text.endsWith("data: [DONE]\n\n"),
          `the stream ended: ${result.text.slice(-80)}`,
        );
        assert.deepEqual(result.text.split("\n\n").filter((e) => e.startsWith("data:")).length, 21);
        assert.deepEqual(status.code, 0);
        assert(exitedAfter < 4000 + 1000, `exited ${exitedAfter} ms after ${signal}`);
        await gw.drained;
        const log = gw.stdout.events();
        const done = relay === "native" ? "native" : "complete";
        assert(log.some((l) => l.outcome === done && l.status === 200), `logged ${done}`);
        assert(!log.some((l) => l.outcome === "client_abort"), "no stream logged as cut");
        assert(log.some((l) => l.event === "stopped"), "the log was flushed before exit");
      },
    );
  });
}

Deno.test("SIGTERM: a 30 s stream ends at an event boundary at drainMs with a gateway_closing error event; exit within drainMs + 1 s", async () => {
  const drainMs = 1500;
  await withProcesses(
    // Each event in two chunks, so that the drain often finds a stream mid-event.
    { chunks: 150, chunkDelayMs: 100, splitEvents: true },
    (target) => ({
      drainMs,
      services: { openai: { target, rps: 100, burst: 100, maxConn: 4, streamRelay: "observe" } },
    }),
    1,
    async (mock, [gw]) => {
      const streams = [readStream(gw.url), readStream(gw.url)];
      await streamsStarted(mock, 2);
      const t0 = Date.now();
      gw.child.kill("SIGTERM");
      // A new request during the drain is told to go elsewhere.
      await new Promise((r) => setTimeout(r, 200));
      const late = await fetch(`${gw.url}/openai/v1/chat/completions`, {
        method: "POST",
        headers,
        body: chatBody(),
      });
      const lateBody = await late.json();
      assert.deepEqual(late.status, 503);
      assert.deepEqual(lateBody.error.code, "gateway_closing");
      assert.deepEqual(late.headers.get("retry-after"), "1");
      assert.deepEqual(late.headers.get("connection"), "close");

      const results = await Promise.all(streams);
      const status = await gw.child.status;
      const exitedAfter = Date.now() - t0;
      for (const r of results) {
        assert.deepEqual(r.error, undefined, "the body ended, with its error event, not cut");
        const ended = r.endedAt - t0;
        assert(ended >= drainMs - 100 && ended <= drainMs + 700, `ended ${ended} ms after SIGTERM`);
        assert(
          r.text.endsWith("\n\n"),
          `ends at an event boundary: ${JSON.stringify(r.text.slice(-60))}`,
        );
        const last = r.text.trimEnd().split("\n\n").at(-1)!;
        assert.deepEqual(JSON.parse(last.slice("data: ".length)).error.code, "gateway_closing");
        // Every event the client got is whole: each parses.
        for (const e of r.text.split("\n\n").filter((e) => e.startsWith("data: {"))) {
          JSON.parse(e.slice("data: ".length));
        }
        assert(!r.text.includes("[DONE]"), "the upstream's answer was not finished");
      }
      assert.deepEqual(status.code, 0);
      assert(exitedAfter <= drainMs + 1000, `exited ${exitedAfter} ms after SIGTERM`);
      for (let i = 0; i < 100 && mock.inFlight > 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.deepEqual(mock.inFlight, 0, "the upstream saw every connection closed");
      await gw.drained;
      const drained = gw.stdout.events().filter((l) => l.outcome === "drained");
      assert.deepEqual(drained.length, 2, "both streams logged as drained");
    },
  );
});

Deno.test("SIGTERM: the slots of a draining process go back to the other processes as its streams end", async () => {
  await withProcesses(
    { chunks: 10, chunkDelayMs: 100 },
    // One slot for the whole deployment, and a TTL far longer than the test:
    // only a hand-back can free it in time.
    (target) => ({
      slotTtlMs: 60_000,
      services: { openai: { target, rps: 100, burst: 100, maxConn: 1 } },
    }),
    2,
    async (mock, [stopping, other]) => {
      const stream = readStream(stopping.url);
      await streamsStarted(mock, 1);
      stopping.child.kill("SIGTERM");
      await stream;
      await stopping.child.status;
      const t0 = Date.now();
      const r = await fetch(`${other.url}/openai/v1/chat/completions`, {
        method: "POST",
        headers,
        body: chatBody(),
        signal: AbortSignal.timeout(10_000),
      });
      await r.body?.cancel();
      assert.deepEqual(r.status, 200);
      assert(Date.now() - t0 < 1000, `the other process waited ${Date.now() - t0} ms for the slot`);
    },
  );
});

Deno.test("SIGINT (Deno Deploy's signal) with the defaults and a 30 s observed stream open: the whole shutdown fits one 4.5 s budget and the process exits 0 within 4.9 s", async () => {
  await withProcesses(
    { chunks: 300, chunkDelayMs: 100 },
    (target) => ({
      services: { openai: { target, rps: 100, burst: 100, maxConn: 4, streamRelay: "observe" } },
    }),
    1,
    async (mock, [gw]) => {
      const stream = readStream(gw.url);
      await streamsStarted(mock, 1);
      const t0 = Date.now();
      gw.child.kill("SIGINT");
      const [result, status] = await Promise.all([stream, gw.child.status]);
      const exitedAfter = Date.now() - t0;
      console.log(`SIGINT → exit: ${exitedAfter} ms`);
      assert.deepEqual(status.code, 0);
      assert(exitedAfter <= 4900, `exited ${exitedAfter} ms after SIGINT`);
      assert(result.text.endsWith("\n\n"), "the stream ended at an event boundary");
      await gw.drained;
      const stopped = gw.stdout.events().find((l) => l.event === "stopped");
      assert(stopped && Number(stopped.sinceSignalMs) <= 4750, `stopped ${stopped?.sinceSignalMs}`);
    },
  );
});

Deno.test("SIGINT with a native stream open (the default relay): the client sees the stream cut (an error), never a clean end that looks whole", async () => {
  await withProcesses(
    { chunks: 300, chunkDelayMs: 100 },
    (target) => ({ services: { openai: { target, rps: 100, burst: 100, maxConn: 4 } } }),
    1,
    async (mock, [gw]) => {
      const stream = readStream(gw.url);
      await streamsStarted(mock, 1);
      const t0 = Date.now();
      gw.child.kill("SIGINT");
      const [result, status] = await Promise.all([stream, gw.child.status]);
      assert.deepEqual(status.code, 0);
      assert(Date.now() - t0 <= 4900, `exited ${Date.now() - t0} ms after SIGINT`);
      assert(result.text.startsWith("data: "), "what came before the cut was passed on");
      assert(!result.text.includes("[DONE]"), "the upstream's answer was not finished");
      assert(result.error !== undefined, "the client saw an error, not a clean end");
    },
  );
});
