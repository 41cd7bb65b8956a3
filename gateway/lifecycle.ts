/**
 * The instance's background work, owned in one place: started once,
 * stopped once, put to sleep when the instance has had no request for
 * `idleMs`, and woken by the next request.
 *
 * Deno Deploy starts instances on demand and keeps idle ones around; an
 * idle instance that still beats its heartbeat, refreshes teams and probes
 * KV pays KV calls (and counts as a live instance for the limits) for
 * nothing. Asleep, it makes none. What a part must do when it sleeps (hand
 * back, flush) is its own `stop`; what it must catch up on when it wakes
 * (beat at once, read teams again) is its own `start`.
 *
 * @module
 */
import type { Clock, TimerHandle } from "../lib/mod.ts";

/**
 * A piece of background work: a timer loop, or what an instance keeps and
 * writes behind (hand-backs, counts, rests), or both: each implements
 * what it has (a loop `start`/`stop`, what is kept `rejoin`/`close`/`settled`).
 */
export interface BackgroundPart {
  /** A name for the log. */
  readonly name: string;
  /** Starts (or restarts after sleep) its loop; a part with no loop has none. */
  start?(): void;
  /** Stops its loop; may write what it holds first. */
  stop?(): void | Promise<void>;
  /** KV answers again after an outage: writes what was kept in memory meanwhile. */
  rejoin?(): void;
  /** The gateway ends (the loops stopped): hands back what it holds; resolves once written. */
  close?(): Promise<unknown>;
  /** Resolves once every write made so far has landed (or failed): the last hand-backs too. */
  settled?(): Promise<unknown>;
}

/** Options for {@linkcode Lifecycle}. */
export interface LifecycleOptions {
  clock: Clock;
  /** No request for this long puts the parts to sleep, in ms. Default 60000. */
  idleMs?: number;
  /** Whether requests are still in flight: the parts never sleep under a long stream. */
  busy?: () => boolean;
  /** Told when the parts sleep and wake. */
  log?: (event: "background_sleep" | "background_wake", detail: Record<string, unknown>) => void;
}

/** Owns the background parts: awake while requests come, asleep after `idleMs` without any. */
export class Lifecycle {
  #parts: BackgroundPart[] = [];
  #clock: Clock;
  #idleMs: number;
  #log: LifecycleOptions["log"];
  #busy: LifecycleOptions["busy"];
  #awake = false;
  #slept = false;
  #closed = false;
  #lastRequest = 0;
  #timer: TimerHandle | undefined;
  #stopping: Promise<void> = Promise.resolve();
  #closing: Promise<void> | undefined;

  constructor(options: LifecycleOptions) {
    this.#clock = options.clock;
    this.#idleMs = options.idleMs ?? 60_000;
    this.#log = options.log;
    this.#busy = options.busy;
    if (!(this.#idleMs > 0)) throw new RangeError(`idleMs must be > 0 (got ${this.#idleMs})`);
  }

  /** Whether the parts run now. */
  get awake(): boolean {
    return this.#awake;
  }

  /** Adds a part; it starts at once if the others run. */
  add(part: BackgroundPart): void {
    this.#parts.push(part);
    if (this.#awake) part.start?.();
  }

  /** Starts every part (the instance has just started: that counts as a request). */
  start(): void {
    this.touch(this.#clock.now());
  }

  /**
   * A request arrived. Awake, this is one store: the idle check reads it
   * when its timer fires, so no timer is touched per request.
   */
  touch(now: number): void {
    this.#lastRequest = now;
    if (this.#awake || this.#closed) return;
    this.#awake = true;
    // A part still writing what it held as it went to sleep finishes first.
    this.#stopping.then(() => {
      if (!this.#awake || this.#closed) return;
      for (const part of this.#parts) part.start?.();
    });
    if (this.#slept) this.#log?.("background_wake", { parts: this.#parts.map((p) => p.name) });
    this.#arm(this.#idleMs);
  }

  /**
   * Stops every part for good (shutdown), then closes each in the order
   * they were added (what is handed back first, the presence last);
   * resolves once each has. Idempotent.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#closed = true;
      if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
      this.#timer = undefined;
      if (this.#awake) this.#sleep();
      await this.#stopping;
      for (const part of this.#parts) await part.close?.()?.catch(() => {});
    })();
  }

  /** KV is back: each part writes what it kept while KV was down. */
  rejoin(): void {
    for (const part of this.#parts) part.rejoin?.();
  }

  /** Resolves once every part's writes so far have landed (or failed). */
  async settled(): Promise<void> {
    await Promise.allSettled(this.#parts.map((part) => part.settled?.()));
  }

  #arm(ms: number): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      const now = this.#clock.now();
      // A response still running (a long stream) counts as a request now.
      if (this.#busy?.()) this.#lastRequest = now;
      const idle = now - this.#lastRequest;
      if (idle < this.#idleMs) return this.#arm(this.#idleMs - idle);
      this.#sleep();
      this.#log?.("background_sleep", { idleMs: idle });
    }, ms);
  }

  #sleep(): void {
    this.#awake = false;
    this.#slept = true;
    const stops = this.#parts.map((part) => Promise.resolve().then(() => part.stop?.()));
    this.#stopping = Promise.allSettled(stops).then(() => {});
  }
}
