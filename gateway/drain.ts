import type { Clock } from "../lib/mod.ts";

/** A relayed body that can be ended before its upstream ends it (see `relay.ts`). */
export interface EndableStream {
  /** Ends the stream cleanly at the next point where that is safe (an SSE event boundary). */
  endSoon(): void;
  /** Ends it now, as an error if it is not at a safe point: the last resort of a drain. */
  endNow(): void;
}

/** How a drain went. */
export interface DrainReport {
  /** Responses still in flight when the drain began. */
  inFlight: number;
  /** Streams still open at `drainMs`, ended early. */
  ended: number;
  /** Responses still unfinished when the drain gave up. */
  unfinished: number;
  tookMs: number;
}

/**
 * Counts the responses in flight and the relayed streams still open, so
 * that a stopping instance can let them finish: once {@linkcode Drain.start}
 * is called, {@linkcode Drain.closing} tells the handler to refuse new work,
 * and {@linkcode Drain.run} waits for what is in flight, up to a bound, then
 * ends the streams still open cleanly.
 */
export class Drain {
  #clock: Clock;
  #active = 0;
  #streams = new Set<EndableStream>();
  #closing = false;
  #changed: (() => void) | undefined;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** True once the drain has begun: new requests are refused. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Responses in flight and streams open. */
  get inFlight(): number {
    return this.#active + this.#streams.size;
  }

  /** Counts one response in flight; the returned function (idempotent) ends it. */
  begin(): () => void {
    this.#active++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#active--;
      this.#changed?.();
    };
  }

  /** Counts an open stream until the returned function is called. */
  open(stream: EndableStream): () => void {
    this.#streams.add(stream);
    return () => {
      if (this.#streams.delete(stream)) this.#changed?.();
    };
  }

  /** Refuse new work from now on. */
  start(): void {
    this.#closing = true;
  }

  /**
   * Lets everything in flight run to its end for up to `drainMs`; then asks
   * each stream still open to end at its next event boundary, and after
   * `graceMs` more ends whatever is left.
   */
  async run(drainMs: number, graceMs = 500): Promise<DrainReport> {
    this.start();
    const started = this.#clock.now();
    const inFlight = this.inFlight;
    await this.#idleWithin(drainMs);
    const ended = this.#streams.size;
    for (const s of [...this.#streams]) s.endSoon();
    if (!await this.#idleWithin(graceMs)) {
      for (const s of [...this.#streams]) s.endNow();
    }
    return {
      inFlight,
      ended,
      unfinished: this.inFlight,
      tookMs: this.#clock.now() - started,
    };
  }

  /** Resolves true once nothing is in flight, or false after `ms`. */
  #idleWithin(ms: number): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => {
        this.#changed = undefined;
        resolve(false);
      }, ms);
      this.#changed = () => {
        if (this.inFlight > 0) return;
        this.#clock.clearTimeout(timer);
        this.#changed = undefined;
        resolve(true);
      };
    });
  }
}
