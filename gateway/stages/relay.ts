import type { Clock, TimerHandle } from "../../lib/mod.ts";
import type { Drain } from "../drain.ts";
import { atEventBoundary, eventEnd, shiftIn } from "./sse.ts";
import type { CutShort, StopEvents } from "./stream_end.ts";

/** How a relayed body ended. */
export type RelayEnd =
  | "complete"
  | "idle_timeout"
  | "client_abort"
  | "upstream_error"
  | "client_stalled"
  | "drained";

/** Options for {@linkcode relayBody}. */
export interface RelayOptions {
  /**
   * The longest upstream silence before the stream is ended cleanly, and
   * the longest a client may leave a chunk untaken before the stream is cut
   * (its slot is then free for others), in ms.
   */
  idleTimeoutMs: number;
  clock: Clock;
  /**
   * True for an SSE stream (`text/event-stream`): ended early, it ends at an
   * event boundary. Any other body ended early is cut with an error, so that
   * a truncated answer never looks whole.
   */
  eventStream: boolean;
  /** Counts the stream while it is open, and may end it early (shutdown). */
  drain?: Drain;
  /**
   * An event stream ended before the upstream ended it ends with one of
   * these, in the provider's shape (stream_end.ts): never a clean end that
   * looks like a whole answer. Without them such a stream is cut.
   */
  stops?: StopEvents;
}

/**
 * Passes an upstream body to the client chunk by chunk as it arrives (no
 * buffering), ends it after `idleTimeoutMs` of upstream silence, and calls
 * `onEnd` exactly once however it ends — so the in-flight slot is held
 * until the last byte is delivered or the client goes away.
 *
 * An answer cut short never looks whole: an event stream ended early (a
 * drain, upstream silence, an upstream that failed) ends at an event
 * boundary with an error event in the provider's shape, or is cut when it
 * is mid-event; any other body is cut (the client sees an error).
 *
 * One timer per stream, re-armed lazily, watches for silence: a stream of
 * many small SSE chunks costs no timer per chunk. For an SSE stream the last
 * four bytes are kept, so that a shutdown can end it at an event boundary.
 */
export function relayBody(
  body: ReadableStream<Uint8Array>,
  options: RelayOptions,
  onEnd: (end: RelayEnd, bytes: number) => void,
  meter?: (chunk: Uint8Array) => void,
): ReadableStream<Uint8Array> {
  const { clock, idleTimeoutMs, eventStream } = options;
  const reader = body.getReader();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let bytes = 0;
  /** The last four bytes sent, newest lowest (SSE streams only). */
  let tail = 0;
  let ended = false;
  let idle = false;
  /** A shutdown asked the stream to end at its next event boundary. */
  let ending = false;
  /** When the pending read started (ms), or -1 while none is pending (the client is reading). */
  let waitingSince = -1;
  /** When the last chunk was handed on: while no read is pending, the client has not taken it. */
  let handedAt = clock.now();
  let timer: TimerHandle | undefined;
  let leaveDrain: (() => void) | undefined;
  const watch = (ms: number) => {
    timer = clock.setTimeout(() => {
      timer = undefined;
      if (ended) return;
      const now = clock.now();
      const silentFor = waitingSince < 0 ? 0 : now - waitingSince;
      // No read pending: the client has not taken what it was given (its socket is full).
      const stalledFor = waitingSince < 0 ? now - handedAt : 0;
      if (silentFor >= idleTimeoutMs) {
        idle = true;
        reader.cancel(new Error("idle timeout")).catch(() => {});
      } else if (stalledFor >= idleTimeoutMs) {
        cut("client_stalled", "the client stopped reading");
      } else {
        watch(idleTimeoutMs - Math.max(silentFor, stalledFor));
      }
    }, ms);
  };
  const end = (how: RelayEnd) => {
    if (ended) return;
    ended = true;
    if (timer !== undefined) clock.clearTimeout(timer);
    leaveDrain?.();
    onEnd(how, bytes);
  };
  /** Ends the client's stream with an error (never a clean end) and lets the upstream go. */
  const cut = (how: RelayEnd, why: string) => {
    try {
      controller.error(new Error(why));
    } catch { /* already closed */ }
    end(how);
    reader.cancel().catch(() => {});
  };
  /**
   * Ends an event stream before its upstream did, at an event boundary:
   * with the error event for `why`, then the end; cut when it cannot say so.
   */
  const stop = (why: CutShort) => {
    const last = options.stops?.[why];
    if (last === undefined) return cut(why, "the answer was cut short");
    try {
      controller.enqueue(last);
      controller.close();
    } catch { /* already closed */ }
    end(why);
    reader.cancel().catch(() => {});
  };
  /** An upstream that went silent or failed: its stream stops with an error event, any other body is cut. */
  const broken = (why: "idle_timeout" | "upstream_error") => {
    if (eventStream && atEventBoundary(tail, bytes)) return stop(why);
    cut(why, why === "idle_timeout" ? "the upstream went silent" : "the upstream failed");
  };
  if (options.drain) {
    leaveDrain = options.drain.open({
      endSoon() {
        if (ended) return;
        if (eventStream && atEventBoundary(tail, bytes)) stop("drained");
        else if (eventStream) ending = true;
        else this.endNow();
      },
      endNow() {
        if (ended) return;
        if (eventStream && atEventBoundary(tail, bytes)) return stop("drained");
        cut("drained", "the gateway is shutting down");
      },
    });
  }
  return new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    async pull(c) {
      waitingSince = clock.now();
      if (timer === undefined) watch(idleTimeoutMs);
      try {
        const { done, value } = await reader.read();
        waitingSince = -1;
        if (ended) return;
        if (idle) return broken("idle_timeout");
        if (done) {
          c.close();
          end("complete");
          return;
        }
        if (ending) {
          const at = eventEnd(value, tail);
          if (at >= 0) {
            bytes += at;
            c.enqueue(value.subarray(0, at));
            return stop("drained");
          }
        }
        bytes += value.byteLength;
        if (eventStream) tail = shiftIn(tail, value);
        handedAt = clock.now();
        c.enqueue(value);
        if (meter !== undefined) meter(value);
      } catch {
        waitingSince = -1;
        if (ended) return;
        broken(idle ? "idle_timeout" : "upstream_error");
      }
    },
    cancel(reason) {
      end("client_abort");
      return reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}
