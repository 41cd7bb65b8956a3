import type { Clock, TimerHandle } from "../lib/mod.ts";

/** What {@linkcode KvStatus} logs: once when KV stops answering, once when it answers again. */
export type KvStatusEvent = "kv_degraded" | "kv_recovered";

/** Options for {@linkcode KvStatus}. */
export interface KvStatusOptions {
  clock: Clock;
  /**
   * One look at KV that resolves only when KV answers (connecting first if
   * need be). Run while KV is down, until it resolves.
   */
  probe: () => Promise<unknown>;
  /** Longest wait between two probes while KV is down, in ms. Default 1000. */
  probeMs?: number;
  /** Whether KV is taken to answer at first. Default true. */
  up?: boolean;
  /** Told of each change, once per change. */
  log?: (event: KvStatusEvent, detail: Record<string, unknown>) => void;
}

/**
 * Whether this instance's KV answers, shared by every part that uses KV.
 *
 * While KV is down, every {@linkcode kvCall} made with this status fails at
 * once (no part waits out its own timeouts and retries: a hanging KV cannot
 * stall requests), the limiters run on their local share, key health lives
 * in memory, and a probe looks at KV every `probeMs`. The first probe that
 * answers brings KV back for everyone and runs the `onRecovered` hooks,
 * which write back what was kept in memory meanwhile.
 */
export class KvStatus {
  #up: boolean;
  #clock: Clock;
  #probe: () => Promise<unknown>;
  #probeMs: number;
  #log: KvStatusOptions["log"];
  #logged = false;
  #lastError = "";
  #timer: TimerHandle | undefined;
  #probing = false;
  #closed = false;
  #paused = false;
  #hooks: Array<() => void> = [];
  #waiters: Array<() => void> = [];
  #latencyMs = 0;

  constructor(options: KvStatusOptions) {
    const probeMs = options.probeMs ?? 1000;
    if (!(probeMs > 0)) throw new RangeError(`probeMs must be positive (got ${probeMs})`);
    this.#up = options.up ?? true;
    this.#clock = options.clock;
    this.#probe = options.probe;
    this.#probeMs = probeMs;
    this.#log = options.log;
    if (!this.#up) this.#schedule(0);
  }

  /** True while KV answers. */
  get up(): boolean {
    return this.#up;
  }

  /**
   * How long a KV call has lately taken, in ms: an average of the last
   * few that answered (0 before any). A shutdown keeps time for its last
   * writes by it, so that a slow KV shortens the drain, not the writes.
   */
  get latencyMs(): number {
    return this.#latencyMs;
  }

  /** A call that answered took `ms`. */
  took(ms: number): void {
    this.#latencyMs += (ms - this.#latencyMs) / 4;
  }

  /** The last error that took KV down (no secrets: KV errors carry none). */
  get lastError(): string {
    return this.#lastError;
  }

  /**
   * KV failed after a call's own retries: from now on calls fail at once and
   * a probe looks for KV's return. Logs `kv_degraded` once per outage.
   */
  fail(error: unknown): void {
    if (this.#closed) return;
    this.#lastError = error instanceof Error ? error.message : String(error);
    if (!this.#logged) {
      this.#logged = true;
      this.#log?.("kv_degraded", { error: this.#lastError });
    }
    if (!this.#up) return;
    this.#up = false;
    this.#schedule(this.#probeMs);
  }

  /** Runs `hook` each time KV comes back after an outage. */
  onRecovered(hook: () => void): void {
    this.#hooks.push(hook);
  }

  /** Resolves once KV answers (at once when it does now), or at `ms` with false. */
  waitUp(ms: number): Promise<boolean> {
    if (this.#up) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve(false);
      }, ms);
      const done = () => {
        this.#clock.clearTimeout(timer);
        resolve(true);
      };
      this.#waiters.push(done);
    });
  }

  /** Stops probing while the instance sleeps (see gateway/lifecycle.ts); a call still finds out. */
  pause(): void {
    this.#paused = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Probes again (at once, if KV is down) after {@linkcode KvStatus.pause}. */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (!this.#up) this.#schedule(0);
  }

  /** Stops probing. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(ms: number): void {
    if (this.#closed || this.#paused || this.#timer !== undefined || this.#probing) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#runProbe();
    }, ms);
  }

  async #runProbe(): Promise<void> {
    if (this.#up || this.#closed) return;
    this.#probing = true;
    try {
      await this.#probe();
    } catch (e) {
      this.#lastError = e instanceof Error ? e.message : String(e);
      this.#probing = false;
      this.#schedule(this.#probeMs);
      return;
    }
    this.#probing = false;
    if (this.#closed) return;
    this.#up = true;
    if (this.#logged) this.#log?.("kv_recovered", {});
    this.#logged = false;
    for (const w of this.#waiters.splice(0)) w();
    for (const hook of this.#hooks) hook();
  }
}
