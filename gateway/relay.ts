/** How a relayed body ended. */
export type RelayEnd = "complete" | "idle_timeout" | "client_abort" | "upstream_error";

/**
 * Passes an upstream body to the client chunk by chunk as it arrives (no
 * buffering), ends it cleanly after `idleTimeoutMs` of upstream silence, and
 * calls `onEnd` exactly once however it ends — so the in-flight slot is held
 * until the last byte is delivered or the client goes away.
 *
 * One timer per stream, re-armed lazily, watches for silence: a stream of
 * many small SSE chunks costs no timer per chunk.
 */
export function relayBody(
  body: ReadableStream<Uint8Array>,
  idleTimeoutMs: number,
  onEnd: (end: RelayEnd, bytes: number) => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  let ended = false;
  let idle = false;
  /** When the pending read started (ms), or -1 while none is pending (the client is reading). */
  let waitingSince = -1;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const watch = (ms: number) => {
    timer = setTimeout(() => {
      timer = undefined;
      if (ended) return;
      const silentFor = waitingSince < 0 ? 0 : Date.now() - waitingSince;
      if (silentFor >= idleTimeoutMs) {
        idle = true;
        reader.cancel(new Error("idle timeout")).catch(() => {});
      } else {
        watch(idleTimeoutMs - silentFor);
      }
    }, ms);
  };
  const end = (how: RelayEnd) => {
    if (ended) return;
    ended = true;
    if (timer !== undefined) clearTimeout(timer);
    onEnd(how, bytes);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      waitingSince = Date.now();
      if (timer === undefined) watch(idleTimeoutMs);
      try {
        const { done, value } = await reader.read();
        waitingSince = -1;
        if (done || idle) {
          controller.close();
          end(idle ? "idle_timeout" : "complete");
          return;
        }
        bytes += value.byteLength;
        controller.enqueue(value);
      } catch {
        waitingSince = -1;
        // Ending cleanly (not erroring) lets an SSE client see a normal end of stream.
        try {
          controller.close();
        } catch { /* already closed */ }
        end(idle ? "idle_timeout" : "upstream_error");
      }
    },
    cancel(reason) {
      end("client_abort");
      return reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}
