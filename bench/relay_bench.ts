/**
 * The observed relay's own cost, in memory (issue 23), run by `deno task bench`:
 * an SSE body of 20 and of 500 chunks read to its end straight from its
 * source, through the cheapest JavaScript pass-through (a pull stream that
 * enqueues what it reads: bench/minimal_proxy.ts's `RELAY=pull`), and through
 * kvgate's `relayBody` as a service's SSE streams get it (the drain, the
 * provider's stop events, the silence watch). No sockets and no other
 * process: what the wrk phases of bench/run.ts measure with six servers
 * sharing a core, here without their noise.
 *
 * @module
 */
import { Drain } from "../gateway/drain.ts";
import { relayBody, silenceSweeper } from "../gateway/stages/relay.ts";
import { stopEvents } from "../gateway/stages/stream_end.ts";
import { systemClock } from "../lib/mod.ts";
import { passThrough } from "./pass_through.ts";

const encoder = new TextEncoder();

/** A body of `n` SSE chunks, each handed over when asked for (as a socket's reader would). */
function sseBody(n: number): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (i < n) c.enqueue(chunks[i++ % chunks.length]);
      else c.close();
    },
  }, { highWaterMark: 0 });
}
const chunks = Array.from(
  { length: 50 },
  (_, i) => encoder.encode(`data: {"choices":[{"delta":{"content":"token ${i}"}}]}\n\n`),
);

async function readAll(body: ReadableStream<Uint8Array>): Promise<void> {
  const reader = body.getReader();
  while (!(await reader.read()).done) { /* the client takes every chunk */ }
}

const observed = {
  idleTimeoutMs: 120_000,
  clock: systemClock,
  timeouts: silenceSweeper(systemClock, 120_000),
  eventStream: true,
  drain: new Drain(systemClock),
  stops: stopEvents("openai"),
};

// Each bench is an async function: `deno bench` awaits only those (a plain
// arrow that returns a promise is timed as if it were synchronous).
for (const n of [20, 500]) {
  const group = `relay ${n}`;
  Deno.bench(`relay, ${n} chunks: the source alone`, { group }, async () => {
    await readAll(sseBody(n));
  });
  Deno.bench(
    `relay, ${n} chunks: the cheapest JavaScript pass-through`,
    { group, baseline: true },
    async () => await readAll(passThrough(sseBody(n))),
  );
  Deno.bench(
    `relay, ${n} chunks: kvgate's observed relay`,
    { group },
    async () => await readAll(relayBody(sseBody(n), observed, () => {})),
  );
}
