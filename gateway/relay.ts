/** How a relayed body ended. */
export type RelayEnd = "complete" | "idle_timeout" | "client_abort" | "upstream_error";

/**
 * Passes an upstream body to the client chunk by chunk as it arrives (no
 * buffering), ends it cleanly after `idleTimeoutMs` of silence, and calls
 * `onEnd` exactly once however it ends — so the in-flight slot is held
 * until the last byte is delivered or the client goes away.
 */
export function relayBody(
  body: ReadableStream<Uint8Array>,
  idleTimeoutMs: number,
  onEnd: (end: RelayEnd, bytes: number) => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  let ended = false;
  const end = (how: RelayEnd) => {
    if (ended) return;
    ended = true;
    onEnd(how, bytes);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let idle = false;
      const timer = setTimeout(() => {
        idle = true;
        reader.cancel(new Error("idle timeout")).catch(() => {});
      }, idleTimeoutMs);
      try {
        const { done, value } = await reader.read();
        if (done || idle) {
          controller.close();
          end(idle ? "idle_timeout" : "complete");
          return;
        }
        bytes += value.byteLength;
        controller.enqueue(value);
      } catch {
        // Ending cleanly (not erroring) lets an SSE client see a normal end of stream.
        try {
          controller.close();
        } catch { /* already closed */ }
        end(idle ? "idle_timeout" : "upstream_error");
      } finally {
        clearTimeout(timer);
      }
    },
    cancel(reason) {
      end("client_abort");
      return reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}
