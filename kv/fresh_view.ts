import type { Clock, TimerHandle } from "../lib/mod.ts";
import type { KvStatus } from "./status.ts";

/** Options for {@linkcode FreshView}. */
export interface FreshViewOptions {
  clock: Clock;
  /**
   * Reads the view again (from KV); a failure goes to `onError` and the last
   * view stays. `changed`: a watch told of a change, so the read must see it.
   */
  read: (changed: boolean) => Promise<unknown>;
  /** Told of a failed read. Default: nothing. */
  onError?: (e: unknown) => void;
  /** Whether KV answers: while it does not, the view in memory decides and no one waits. */
  status?: KvStatus;
  /** A view this old (ms) is read again, in the background, when a request asks. */
  refreshAfterMs: number;
  /** A view this old (ms, >= `refreshAfterMs`) is read again before the request goes on... */
  waitAfterMs: number;
  /** ...which waits this long for it at most (ms): KV trouble must not stall requests. */
  waitAtMostMs: number;
  /** While a watch tells of changes, the view is still read this often (ms). Default 30000. */
  backstopMs?: number;
  /** Reads that changes ask for start at least this far apart (ms). Default 250. */
  changedSpacingMs?: number;
}

/**
 * A view of records other instances change (a service's key health, the
 * teams made through the admin API), read from KV when a request needs it
 * rather than on a timer: an idle instance reads nothing, and one woken
 * after a long sleep reads before it acts on what it knew before.
 *
 * A request asks {@linkcode FreshView.fresh}: a view older than
 * `refreshAfterMs` is read again in the background; one older than
 * `waitAfterMs` is read again before the request goes on (at most
 * `waitAtMostMs`). While every watch on the records is live
 * (kv/watch.ts), a change starts a read as it is made
 * ({@linkcode FreshView.changed}), the view is as fresh as the watch, and
 * only a slow backstop read goes on. One read at a time.
 */
export class FreshView {
  #o: FreshViewOptions;
  #clock: Clock;
  #backstopMs: number;
  #spacingMs: number;
  #checkedAt = -Infinity;
  #startedAt = -Infinity;
  #reading: Promise<void> | undefined;
  #again = false;
  #changedTimer: TimerHandle | undefined;
  #watches = 0;
  #watchesLive = 0;

  constructor(options: FreshViewOptions) {
    const { refreshAfterMs, waitAfterMs, waitAtMostMs } = options;
    if (!(refreshAfterMs >= 0)) {
      throw new RangeError(`refreshAfterMs must be >= 0 (got ${refreshAfterMs})`);
    }
    if (!(waitAfterMs >= refreshAfterMs)) {
      throw new RangeError(`waitAfterMs must be >= refreshAfterMs (got ${waitAfterMs})`);
    }
    if (!(waitAtMostMs > 0)) throw new RangeError(`waitAtMostMs must be > 0 (got ${waitAtMostMs})`);
    this.#o = options;
    this.#clock = options.clock;
    this.#backstopMs = options.backstopMs ?? 30_000;
    this.#spacingMs = options.changedSpacingMs ?? 250;
  }

  /**
   * Makes sure the view is fresh enough to act on (see the class doc).
   * Returns a promise only when the caller must wait for a read: the usual
   * request allocates nothing here.
   *
   * @param now The clock's reading, when the caller has just taken one. Default: read now.
   */
  fresh(now: number = this.#clock.now()): Promise<void> | undefined {
    const age = now - this.#checkedAt;
    if (!this.#readIfOld(age) || age < this.#o.waitAfterMs) return undefined;
    let timer: TimerHandle | undefined;
    return Promise.race([
      this.#reading!,
      new Promise<void>((r) => timer = this.#clock.setTimeout(r, this.#o.waitAtMostMs)),
    ]).finally(() => this.#clock.clearTimeout(timer!));
  }

  /**
   * Has the view read again in the background when it is `refreshAfterMs`
   * old, with no one waiting: for a choice made from memory (a model
   * group's target, judged without a KV call) that the next request should
   * make on a current view.
   */
  refreshSoon(now: number = this.#clock.now()): void {
    this.#readIfOld(now - this.#checkedAt);
  }

  /** Reads the view now (or joins the read under way); resolves once it has ended. */
  readNow(): Promise<void> {
    this.#read();
    return this.#reading!;
  }

  /** The next request reads the view again first (KV is back: what it holds may differ). */
  forget(): void {
    this.#checkedAt = -Infinity;
  }

  /** Whether every watch over the records is live. */
  get watched(): boolean {
    return this.#watches > 0 && this.#watchesLive === this.#watches;
  }

  /** How many watches cover the records (0: none; read when asked). */
  watchedBy(watches: number): void {
    this.#watches = watches;
    this.#watchesLive = 0;
  }

  /** One of those watches is live, or no longer. */
  watchLive(live: boolean): void {
    this.#watchesLive = Math.max(0, this.#watchesLive + (live ? 1 : -1));
  }

  /**
   * A watched record changed (`changed` false: a watch has just started, so
   * nothing is known to have changed): read the view again now (in the
   * background), or, when a read has just started, once it is over.
   */
  changed(changed = true): void {
    if (this.#reading || this.#changedTimer !== undefined) {
      this.#again = true;
      return;
    }
    const wait = this.#startedAt + this.#spacingMs - this.#clock.now();
    if (wait <= 0) return void this.#read(changed);
    this.#changedTimer = this.#clock.setTimeout(() => {
      this.#changedTimer = undefined;
      this.#read(changed);
    }, wait);
  }

  /** Stops the read a change has scheduled, if any (the owner is closing). */
  close(): void {
    if (this.#changedTimer !== undefined) this.#clock.clearTimeout(this.#changedTimer);
    this.#changedTimer = undefined;
    this.#again = false;
  }

  /** Starts a read when the view is `age` old and one is worth making; true when it may be waited for. */
  #readIfOld(age: number): boolean {
    if (age < this.#o.refreshAfterMs) return false;
    // Watched, the view is read again when it changes: it is as fresh as the watch, and the slow
    // backstop read goes on in the background. (Waited for, it put a KV round trip on the path of
    // one request every 30 s: bench:regions saw 180 ms against 50 at KV 120 ms away.)
    if (this.watched) {
      if (age >= this.#backstopMs) this.#read();
      return false;
    }
    // KV is down: the view in memory is all there is; waiting would only add latency.
    if (this.#o.status !== undefined && !this.#o.status.up) return false;
    this.#read();
    return true;
  }

  #read(changed = false): void {
    if (this.#reading) return;
    this.#again = false;
    this.#startedAt = this.#clock.now();
    this.#reading = this.#o.read(changed).then(() => {}, (e) => this.#o.onError?.(e)).finally(
      () => {
        this.#checkedAt = this.#clock.now();
        this.#reading = undefined;
        if (this.#again) this.changed();
      },
    );
  }
}
