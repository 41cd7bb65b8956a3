import { type Clock, TimeoutSweeper } from "../../lib/mod.ts";
import type { Drain, EndableStream } from "../drain.ts";
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
   * The longest upstream silence before the stream is ended (with an error
   * event, or cut), and the longest a client may leave a chunk untaken
   * before the stream is cut (its slot is then free for others), in ms;
   * acted on up to 1/10 of it (≤ 2 s) later, never sooner.
   */
  idleTimeoutMs: number;
  clock: Clock;
  /**
   * The one timer every relayed stream's silence watch is kept on
   * ({@linkcode silenceSweeper}); the watch looks once per its resolution. A
   * list entry costs a fraction of a runtime timer (0.07 against 1.4 µs to
   * arm and cancel).
   */
  timeouts: TimeoutSweeper;
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
 * The sweeper relayed streams keep their silence watch on: its resolution,
 * the watch's step, is 1/20 of `idleTimeoutMs`, 5 ms to 1 s.
 */
export function silenceSweeper(clock: Clock, idleTimeoutMs: number): TimeoutSweeper {
  return new TimeoutSweeper(clock, Math.min(1000, Math.max(5, idleTimeoutMs / 20)));
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
 */
export function relayBody(
  body: ReadableStream<Uint8Array>,
  options: RelayOptions,
  onEnd: (end: RelayEnd, bytes: number) => void,
  meter?: (chunk: Uint8Array) => void,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(new RelaySource(body, options, onEnd, meter), {
    highWaterMark: 0,
  });
}

/**
 * The relay's underlying source: the stream calls `pull` when the client
 * wants a chunk (so nothing is read ahead) and `cancel` when it goes away;
 * a drain calls `endSoon`/`endNow`. Silence is watched from one entry on
 * the relays' shared timeout sweeper (see `#watch`), so a stream holds no
 * timer of its own and a chunk costs no clock read. For an SSE stream the
 * last four bytes are kept, so that a shutdown can end it at an event
 * boundary.
 */
class RelaySource implements UnderlyingDefaultSource<Uint8Array>, EndableStream {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #o: RelayOptions;
  #clock: Clock;
  #onEnd: (end: RelayEnd, bytes: number) => void;
  #meter: ((chunk: Uint8Array) => void) | undefined;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #bytes = 0;
  /** The last four bytes sent, newest lowest (SSE streams only). */
  #tail = 0;
  #ended = false;
  #idle = false;
  /** A shutdown asked the stream to end at its next event boundary. */
  #ending = false;
  /** A read is pending (the client waits for the upstream); else the client holds a chunk untaken. */
  #reading = false;
  /** Reads asked for and chunks handed on so far; the watch compares it with what it last saw. */
  #moves = 0;
  #movesSeen = 0;
  /** When the watch last saw the stream move (ms). */
  #quietSince: number;
  /** Cancels the pending silence watch, or undefined while none is pending. */
  #unwatch: (() => void) | undefined;
  #leaveDrain: (() => void) | undefined;

  constructor(
    body: ReadableStream<Uint8Array>,
    options: RelayOptions,
    onEnd: (end: RelayEnd, bytes: number) => void,
    meter: ((chunk: Uint8Array) => void) | undefined,
  ) {
    this.#reader = body.getReader();
    this.#o = options;
    this.#clock = options.clock;
    this.#onEnd = onEnd;
    this.#meter = meter;
    this.#quietSince = options.clock.now();
    this.#leaveDrain = options.drain?.open(this);
  }

  start(c: ReadableStreamDefaultController<Uint8Array>): void {
    this.#controller = c;
  }

  async pull(c: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    this.#reading = true;
    this.#moves++;
    if (this.#unwatch === undefined) this.#watch();
    try {
      const read = await this.#reader.read();
      this.#reading = false;
      this.#moves++;
      this.#pass(c, read);
    } catch {
      this.#reading = false;
      if (!this.#ended) this.#broken(this.#idle ? "idle_timeout" : "upstream_error");
    }
  }

  /** Hands a chunk read on (or ends the stream at the upstream's end, or a drain's boundary). */
  #pass(
    c: ReadableStreamDefaultController<Uint8Array>,
    read: ReadableStreamReadResult<Uint8Array>,
  ) {
    if (this.#ended) return;
    if (this.#idle) return this.#broken("idle_timeout");
    if (read.done) {
      c.close();
      return this.#end("complete");
    }
    const value = read.value;
    if (this.#ending) {
      const at = eventEnd(value, this.#tail);
      if (at >= 0) {
        this.#bytes += at;
        c.enqueue(value.subarray(0, at));
        return this.#stop("drained");
      }
    }
    this.#bytes += value.byteLength;
    if (this.#o.eventStream) this.#tail = shiftIn(this.#tail, value);
    c.enqueue(value);
    if (this.#meter !== undefined) this.#meter(value);
  }

  cancel(reason: unknown): Promise<void> {
    this.#end("client_abort");
    return this.#reader.cancel(reason).catch(() => {});
  }

  /** A drain: ends at the next event boundary (an event stream), else now. */
  endSoon(): void {
    if (this.#ended) return;
    if (this.#atBoundary()) this.#stop("drained");
    else if (this.#o.eventStream) this.#ending = true;
    else this.endNow();
  }

  /** The drain's end: stops an event stream at a boundary, else cuts. */
  endNow(): void {
    if (this.#ended) return;
    if (this.#atBoundary()) return this.#stop("drained");
    this.#cut("drained", "the gateway is shutting down");
  }

  #atBoundary(): boolean {
    return this.#o.eventStream && atEventBoundary(this.#tail, this.#bytes);
  }

  /**
   * Looks every step (the sweeper's resolution) whether the stream moved
   * (a read asked for, a chunk handed on) since the last look; quiet for
   * `idleTimeoutMs`, it ends: the upstream went silent if a read is
   * pending, else the client stopped reading (its socket is full). A move
   * is dated at the look that sees it, never before it happened, so a
   * stream ends at most two steps (on `silenceSweeper`, 1/10 of
   * `idleTimeoutMs`, ≤ 2 s) late and never early — and passing a chunk on
   * reads no clock: two `Date.now()` a chunk were most of what this relay
   * cost over a bare pass-through (bench/relay_bench.ts).
   */
  #watch(): void {
    const timeouts = this.#o.timeouts;
    this.#unwatch = timeouts.add(timeouts.resolutionMs, () => {
      this.#unwatch = undefined;
      if (this.#ended) return;
      const now = this.#clock.now();
      if (this.#moves !== this.#movesSeen) {
        this.#movesSeen = this.#moves;
        this.#quietSince = now;
      }
      if (now - this.#quietSince < this.#o.idleTimeoutMs) return this.#watch();
      if (this.#reading) {
        this.#idle = true;
        this.#reader.cancel(new Error("idle timeout")).catch(() => {});
      } else this.#cut("client_stalled", "the client stopped reading");
    });
  }

  #end(how: RelayEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#unwatch?.();
    this.#leaveDrain?.();
    this.#onEnd(how, this.#bytes);
  }

  /** Ends the client's stream with an error (never a clean end) and lets the upstream go. */
  #cut(how: RelayEnd, why: string): void {
    try {
      this.#controller.error(new Error(why));
    } catch { /* already closed */ }
    this.#end(how);
    this.#reader.cancel().catch(() => {});
  }

  /**
   * Ends an event stream before its upstream did, at an event boundary:
   * with the error event for `why`, then the end; cut when it cannot say so.
   */
  #stop(why: CutShort): void {
    const last = this.#o.stops?.[why];
    if (last === undefined) return this.#cut(why, "the answer was cut short");
    try {
      this.#controller.enqueue(last);
      this.#controller.close();
    } catch { /* already closed */ }
    this.#end(why);
    this.#reader.cancel().catch(() => {});
  }

  /** An upstream that went silent or failed: its stream stops with an error event, any other body is cut. */
  #broken(why: "idle_timeout" | "upstream_error"): void {
    if (this.#atBoundary()) return this.#stop(why);
    this.#cut(why, why === "idle_timeout" ? "the upstream went silent" : "the upstream failed");
  }
}
