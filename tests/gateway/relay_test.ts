import assert from "node:assert/strict";
import { Drain } from "../../gateway/drain.ts";
import { relayBody, type RelayEnd, silenceSweeper } from "../../gateway/stages/relay.ts";
import { atEventBoundary, eventEnd, shiftIn } from "../../gateway/stages/sse.ts";
import { stopEvents } from "../../gateway/stages/stream_end.ts";
import type { ServiceStyle } from "../../config/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { TimeoutSweeper } from "../../lib/mod.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const tailOf = (s: string) => shiftIn(0, enc.encode(s));

Deno.test("SSE boundaries: an empty line ends an event, whatever the line ends (LF, CRLF, CR)", () => {
  for (const done of ["data: a\n\n", "data: a\r\n\r\n", "data: a\r\r", "data: a\n\r\n"]) {
    assert(atEventBoundary(tailOf(done), done.length), JSON.stringify(done));
  }
  for (const open of ["data: a", "data: a\n", "data: a\r\n", "data: a\n\nda"]) {
    assert(!atEventBoundary(tailOf(open), open.length), JSON.stringify(open));
  }
  assert(atEventBoundary(0, 0), "nothing sent yet is a boundary");
  // Across chunks: the tail carries over.
  assert(atEventBoundary(shiftIn(tailOf("data: a\n"), enc.encode("\n")), 9));
  assert.equal(eventEnd(enc.encode("b\n\ndata: c\n\n"), tailOf("data: a")), 3);
  assert.equal(eventEnd(enc.encode("\ndata: c"), tailOf("data: a\n")), 1);
  assert.equal(eventEnd(enc.encode("x\r\n\r\ny"), 0), 5);
  assert.equal(eventEnd(enc.encode("still the same event"), tailOf("data: a")), -1);
});

/** An upstream body whose chunks the test pushes. */
function upstream() {
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    start: (c) => void (ctl = c),
    cancel: () => void (cancelled = true),
  });
  return {
    body,
    push: (s: string) => ctl.enqueue(enc.encode(s)),
    end: () => ctl.close(),
    error: (e: Error) => ctl.error(e),
    get cancelled() {
      return cancelled;
    },
  };
}

function relay(eventStream: boolean, idleTimeoutMs = 60_000, style: ServiceStyle = "openai") {
  const clock = new FakeClock();
  const drain = new Drain(clock);
  const up = upstream();
  const ends: Array<[RelayEnd, number]> = [];
  const stops = eventStream ? stopEvents(style) : undefined;
  const out = relayBody(
    up.body,
    {
      clock,
      timeouts: silenceSweeper(clock, idleTimeoutMs),
      idleTimeoutMs,
      eventStream,
      drain,
      stops,
    },
    (e, b) => ends.push([e, b]),
  );
  const reader = out.getReader();
  let text = "";
  let error: unknown;
  const reading = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        text += dec.decode(value);
      }
    } catch (e) {
      error = e;
    }
  })();
  return { clock, drain, up, ends, reading, text: () => text, error: () => error };
}

Deno.test("relay: chunks pass as they arrive, and the end is told once with the byte count", async () => {
  const r = relay(true);
  r.up.push("data: 1\n\n");
  await r.clock.advance(1);
  assert.equal(r.text(), "data: 1\n\n", "a chunk reaches the client before the next arrives");
  r.up.push("data: 2\n\n");
  r.up.end();
  await settle(r.clock, r.reading);
  assert.deepEqual(r.ends, [["complete", 18]]);
  assert.equal(r.drain.inFlight, 0);
});

Deno.test("relay: 100 open streams watch for silence on one timer, and each ends at its own silence", async () => {
  const clock = new FakeClock();
  const timeouts = new TimeoutSweeper(clock, 50);
  const ends: RelayEnd[][] = [];
  const ups = Array.from({ length: 100 }, (_, i) => {
    const up = upstream();
    ends.push([]);
    const out = relayBody(
      up.body,
      { clock, timeouts, idleTimeoutMs: 1000, eventStream: true, stops: stopEvents("openai") },
      (e) => ends[i].push(e),
    );
    (async () => {
      for await (const _ of out) { /* the client reads all */ }
    })();
    return up;
  });
  await clock.advance(1);
  assert.equal(clock.pending, 1, "one runtime timer for all of them");
  // The even streams keep talking every 600 ms; the odd ones say nothing.
  for (let t = 0; t < 3; t++) {
    ups.forEach((up, i) => i % 2 === 0 && up.push(`data: ${t}\n\n`));
    await clock.advance(600);
  }
  assert.deepEqual(ends.filter((e) => e.length > 0).length, 50);
  assert(ends.every((e, i) => i % 2 === 0 ? e.length === 0 : e[0] === "idle_timeout"));
  ups.forEach((up, i) => i % 2 === 0 && up.end());
  await clock.advance(1);
  assert(ends.every((e, i) => i % 2 === 1 || e[0] === "complete"));
  await clock.advance(100);
  assert.equal(clock.pending, 0, "no timer left once every stream has ended");
});

/** The last event of `text`, parsed: what an SDK reads last. */
function lastEvent(text: string): { event?: string; data: Record<string, unknown> } {
  const block = text.trimEnd().split("\n\n").at(-1)!;
  const event = /^event: (.*)$/m.exec(block)?.[1];
  return { event, data: JSON.parse(/^data: (.*)$/m.exec(block)![1]) };
}

Deno.test("relay: a silent upstream is ended after idleTimeoutMs, on the clock, with an error event — never a clean end that looks whole", async () => {
  const r = relay(true, 5000);
  r.up.push("data: 1\n\n");
  await r.clock.advance(4000);
  assert.deepEqual(r.ends, []);
  await r.clock.advance(1500);
  await settle(r.clock, r.reading);
  assert.deepEqual(r.ends, [["idle_timeout", 9]]);
  assert.equal(r.error(), undefined);
  assert.deepEqual(lastEvent(r.text()).data.error, {
    message: "The upstream sent nothing for too long: kvgate cut the answer short.",
    type: "server_error",
    code: "upstream_timeout",
  });
  assert(r.up.cancelled, "the upstream is let go");

  const plain = relay(false, 5000);
  plain.up.push('{"choices": [');
  await plain.clock.advance(5500);
  await settle(plain.clock, plain.reading);
  assert(plain.error() !== undefined, "a plain body cut short ends as an error");
  assert.deepEqual(plain.ends, [["idle_timeout", 13]]);
});

Deno.test("relay: an upstream that fails mid-stream: an error event at a boundary, a cut inside an event", async () => {
  for (const [pushed, cutInside] of [["data: 1\n\n", false], ['data: {"ha', true]] as const) {
    const r = relay(true, 60_000, "anthropic");
    r.up.push(pushed);
    await r.clock.advance(1);
    r.up.error(new Error("connection reset"));
    await settle(r.clock, r.reading);
    assert.deepEqual(r.ends.map(([e]) => e), ["upstream_error"]);
    if (cutInside) assert(r.error() !== undefined, "half an event is never passed off as whole");
    else {
      assert.equal(r.error(), undefined);
      const last = lastEvent(r.text());
      assert.equal(last.event, "error");
      assert.equal((last.data.error as { type: string }).type, "api_error");
    }
  }
});

Deno.test("drain: a stream at an event boundary ends at once, cleanly, and lets the upstream go", async () => {
  const r = relay(true);
  r.up.push("data: 1\n\n");
  await r.clock.advance(1);
  const report = settle(r.clock, r.drain.run(1000));
  assert.equal((await report).ended, 1);
  await settle(r.clock, r.reading);
  assert.equal(r.error(), undefined);
  assert.equal(
    r.text(),
    'data: 1\n\ndata: {"error":{"message":"This kvgate instance is shutting down and cut the answer short: retry the request.","type":"server_error","code":"gateway_closing"}}\n\n',
  );
  assert.deepEqual(r.ends, [["drained", 9]]);
  assert(r.up.cancelled);
});

Deno.test("drain: a stream mid-event ends just after that event, never inside it; on an Anthropic-shaped service with its error event", async () => {
  const r = relay(true, 60_000, "anthropic");
  r.up.push('data: 1\n\ndata: {"par');
  await r.clock.advance(1);
  const report = r.drain.run(1000);
  await r.clock.advance(1100);
  assert.deepEqual(r.ends, [], "waits for the event's end");
  r.up.push('t": 2}\n\ndata: 3\n\n');
  await settle(r.clock, report);
  await settle(r.clock, r.reading);
  assert.equal(r.error(), undefined);
  assert.equal(
    r.text(),
    'data: 1\n\ndata: {"part": 2}\n\nevent: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"This kvgate instance is shutting down and cut the answer short: retry the request."}}\n\n',
  );
});

Deno.test("drain: a stream still mid-event after the grace is cut with an error, and a plain body is cut at once", async () => {
  const sse = relay(true);
  sse.up.push('data: {"half');
  await sse.clock.advance(1);
  const report = await settle(sse.clock, sse.drain.run(1000, 500));
  await settle(sse.clock, sse.reading);
  assert.equal(report.unfinished, 0);
  assert(sse.error() !== undefined, "a half event never looks like a whole answer");

  const plain = relay(false);
  plain.up.push('{"choices": [');
  await plain.clock.advance(1);
  await settle(plain.clock, plain.drain.run(1000));
  await settle(plain.clock, plain.reading);
  assert(plain.error() !== undefined, "a truncated JSON body ends as an error");
  assert.deepEqual(plain.ends, [["drained", 13]]);
});

Deno.test("drain: responses in flight run to their end before drainMs; nothing is ended early", async () => {
  const r = relay(true);
  const done = r.drain.begin();
  r.up.push("data: 1\n\n");
  const report = r.drain.run(4000);
  await r.clock.advance(1000);
  r.up.push("data: [DONE]\n\n");
  r.up.end();
  await r.clock.advance(1000);
  done();
  const { ended, tookMs, inFlight } = await settle(r.clock, report);
  assert.deepEqual({ ended, inFlight }, { ended: 0, inFlight: 2 });
  assert(tookMs < 4000, `took ${tookMs} ms`);
  assert.equal(r.text(), "data: 1\n\ndata: [DONE]\n\n");
  assert.deepEqual(r.ends, [["complete", 23]]);
});

Deno.test("M6: a client that stops reading while the upstream has more is cut after idleTimeoutMs, and its slot is freed", async () => {
  const clock = new FakeClock();
  const up = upstream();
  const ends: Array<[RelayEnd, number]> = [];
  const out = relayBody(
    up.body,
    { clock, timeouts: silenceSweeper(clock, 5000), idleTimeoutMs: 5000, eventStream: true },
    (e, b) => ends.push([e, b]),
  );
  const reader = out.getReader();
  up.push("data: 1\n\n");
  const first = await reader.read();
  assert.equal(dec.decode(first.value), "data: 1\n\n");
  // The client takes nothing more, while the upstream keeps sending.
  for (let i = 0; i < 4; i++) {
    up.push(`data: ${i}\n\n`);
    await clock.advance(1000);
  }
  assert.deepEqual(ends, [], "not before idleTimeoutMs");
  await clock.advance(1500);
  assert.deepEqual(ends, [["client_stalled", 9]]);
  assert(up.cancelled, "the upstream is let go");
  await assert.rejects(
    reader.read(),
    /stopped reading/,
    "the client sees an error, never a clean end",
  );
});

Deno.test("M6: a client that reads slowly but steadily is never cut", async () => {
  const r = relay(true, 5000);
  for (let i = 0; i < 10; i++) {
    r.up.push(`data: ${i}\n\n`);
    await r.clock.advance(3000);
  }
  r.up.end();
  await settle(r.clock, r.reading);
  assert.deepEqual(r.ends.map(([e]) => e), ["complete"]);
});
