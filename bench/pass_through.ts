/**
 * The cheapest relay JavaScript can be: a pull stream that reads one chunk
 * when the client wants one and enqueues it as it is. The floor for any
 * relay that looks at the chunks — bench/minimal_proxy.ts serves through it
 * with `RELAY=pull`, and bench/relay_bench.ts sets kvgate's relay beside it.
 *
 * @module
 */

/** The body, chunk by chunk through JavaScript, nothing else done. */
export function passThrough(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      const { done, value } = await reader.read();
      if (done) c.close();
      else c.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}
