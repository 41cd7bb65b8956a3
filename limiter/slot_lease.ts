import type { CapacityStore, HeldParts, Waiters } from "./capacity_store.ts";
import type { Clock, TimerHandle } from "../lib/mod.ts";

/** How long a shared slot may sit idle with this instance before it goes back, in ms. */
export const SLOT_LINGER_MS = 1000;

/** Options for {@linkcode SlotLease}. */
export interface SlotLeaseOptions extends HeldParts {
  /** The service's in-flight cap: all a store of this instance's own holds. */
  maxConn: number;
  /** How long held slots stay valid without renewal, in ms. */
  ttlMs: number;
  /** Counts the slot writes. */
  stats: { slotWrites: number };
}

/**
 * The in-flight slots one instance holds of a service. A shared store's
 * slots are claimed in KV with an expiry and renewed by the heartbeat; an
 * instance keeps as many as it used at once in the last second and gives
 * the rest back; one that cannot renew stops admitting past its claim (the
 * fence at `validUntil`). On shutdown every slot goes back as its request ends.
 */
export class SlotLease {
  /** Slots this instance holds. */
  held = 0;
  /** Slots in use now. */
  inUse = 0;
  /** Held slots may be used until then (the claim's renewal). */
  validUntil = Infinity;
  #store: CapacityStore;
  #clock: Clock;
  #ttlMs: number;
  #peers: () => number;
  #random: () => number;
  #stats: { slotWrites: number };
  #queue: Waiters;
  #holding = false;
  /** Asks again for slots after none were free. */
  #pollTimer: TimerHandle | undefined;
  /** Gives idle slots back after SLOT_LINGER_MS. */
  #handbackTimer: TimerHandle | undefined;
  /** Most slots in use at once since the last hand-back check. */
  #peakInUse = 0;
  #pollMs = 20;
  #shutdownWrites: Promise<unknown> = Promise.resolve();
  #pendingHold: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(options: SlotLeaseOptions) {
    this.#store = options.store;
    this.#clock = options.clock;
    this.#ttlMs = options.ttlMs;
    this.#peers = options.peers;
    this.#random = options.random;
    this.#stats = options.stats;
    this.#queue = options.waiters;
    // A store of this instance's own holds every slot from the start: no round trip to admit.
    if (!this.#store.shared) this.held = options.maxConn;
  }

  /** Takes a free slot (check {@linkcode SlotLease.free} first); returns its idempotent release. */
  take(): () => void {
    this.inUse++;
    return this.releaser();
  }

  /**
   * Renews held slots so other instances keep counting them; call every
   * ttlMs/3. Skipped while another slot write is out (that write renews the
   * claim too). The lease has one slot write out at a time: a renewal that
   * landed after a larger claim would shrink KV's count below the slots in
   * use, and other instances would take them.
   */
  heartbeat(): Promise<void> {
    if (this.held === 0 || this.#closed || !this.#store.shared || this.#holding) {
      return Promise.resolve();
    }
    // A renewal is a hold of what is held: one write path, one write out at a time.
    return this.#hold(Math.max(this.inUse, this.held));
  }

  /**
   * Shutting down: stops timers and hands the idle slots back, after any
   * write still under way; the slots in use go back one by one as their
   * requests end.
   */
  close(): Promise<unknown> {
    this.#closed = true;
    if (this.#pollTimer !== undefined) this.#clock.clearTimeout(this.#pollTimer);
    if (this.#handbackTimer !== undefined) this.#clock.clearTimeout(this.#handbackTimer);
    let write: Promise<unknown> = Promise.resolve();
    if (this.#store.shared && (this.held > this.inUse || this.#holding)) {
      // After any write still under way, so that this one lands last.
      this.#shutdownWrites = this.#pendingHold;
      write = this.#writeAfterClose();
    }
    this.held = this.inUse;
    return write;
  }

  /** After close: resolves once the slot writes made so far have landed (or failed). */
  async settled(): Promise<void> {
    await this.#shutdownWrites;
  }

  /** True when a held slot is free and the claim is still valid at `now`. */
  free(now: number = this.#clock.now()): boolean {
    if (this.inUse >= this.held) return false;
    // Fence: slots whose lease could not be renewed are no longer ours to use.
    return now < this.validUntil;
  }

  /** An idempotent release of one slot in use. */
  releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (this.inUse > this.#peakInUse) this.#peakInUse = this.inUse;
      this.inUse--;
      if (this.#closed) {
        // Shutting down: no linger, the slot goes back now.
        this.held = this.inUse;
        if (this.#store.shared) this.#writeAfterClose();
        return;
      }
      if (this.#queue.waiting() > 0 && this.free()) {
        this.inUse++;
        this.#queue.grant();
      } else if (this.#queue.waiting() === 0) {
        this.#scheduleHandback();
      }
    };
  }

  /**
   * After close: writes the slots still in use, after every earlier write,
   * each with the count at its turn, so the last write carries the last count.
   */
  #writeAfterClose(): Promise<unknown> {
    this.#shutdownWrites = this.#shutdownWrites.then(() =>
      this.#store.holdSlots(this.inUse).catch(() => {})
    );
    return this.#shutdownWrites;
  }

  #scheduleHandback(): void {
    if (!this.#store.shared || this.#handbackTimer !== undefined) return;
    // Slots beyond what was in use at once during the last SLOT_LINGER_MS go
    // back to the deployment; the rest stay for the next local requests (so
    // steady traffic costs no slot writes). This timer never delays asking
    // for more slots.
    this.#handbackTimer = this.#clock.setTimeout(() => {
      this.#handbackTimer = undefined;
      if (this.#closed) return;
      const keep = Math.max(this.inUse, this.#peakInUse);
      this.#peakInUse = this.inUse;
      if (this.#holding) return this.#scheduleHandback();
      if (this.#queue.waiting() === 0 && this.held > keep) this.#hold(keep);
      if (this.held > this.inUse) this.#scheduleHandback();
    }, SLOT_LINGER_MS);
  }

  /** Grants waiters the free slots, and asks the store for more when some still wait. */
  pump(): void {
    this.#pumpLocal();
    if (
      this.#queue.waiting() > 0 && this.#store.shared && !this.#holding &&
      this.#pollTimer === undefined
    ) {
      // One turn later, so that requests arriving together share one write.
      this.#holding = true;
      this.#clock.setTimeout(() => {
        this.#holding = false;
        if (this.#queue.waiting() > 0 && !this.#closed) {
          this.#hold(this.inUse + this.#queue.waiting());
        }
      }, 0);
    }
  }

  /** Writes a claim of `target` slots; resolves once its answer has been acted on. */
  #hold(target: number): Promise<void> {
    // Lowering takes effect here at once, so no request is admitted on a
    // slot that the write is giving back.
    if (target < this.held) this.held = target;
    this.#holding = true;
    this.#stats.slotWrites++;
    const asked = this.#clock.now();
    const write = this.#store.holdSlots(target);
    this.#pendingHold = write.catch(() => {});
    return write.then(
      (held) => {
        this.#holding = false;
        if (this.#closed) return;
        this.held = held;
        this.validUntil = asked + this.#ttlMs;
        const before = this.#queue.waiting();
        this.#pumpLocal();
        if (this.#queue.waiting() > 0 && held >= target) {
          // Everything asked for was granted: the rest arrived since. Ask again now.
          this.pump();
        } else if (this.#queue.waiting() > 0) {
          // Nothing free anywhere: poll, backing off, until another instance lets go.
          // Back off to 250 ms per live instance (at most 1 s): the polls of
          // all instances together stay near four a second.
          const ceiling = Math.min(1000, 250 * Math.max(1, this.#peers()));
          this.#pollMs = before === this.#queue.waiting()
            ? Math.min(this.#pollMs * 2, ceiling)
            : 20;
          this.#pollIn(this.#pollMs);
        } else {
          this.#pollMs = 20;
          if (this.held > this.inUse) this.#scheduleHandback();
        }
      },
      () => {
        this.#holding = false;
        if (this.#queue.waiting() > 0 && !this.#closed) this.#pollIn(250);
      },
    );
  }

  #pumpLocal(): void {
    while (this.#queue.waiting() > 0 && this.free()) {
      this.inUse++;
      this.#queue.grant();
    }
  }

  #pollIn(ms: number): void {
    // One poll pending at a time (a renewal's answer may come while one is).
    if (this.#pollTimer !== undefined) return;
    this.#pollTimer = this.#clock.setTimeout(() => {
      this.#pollTimer = undefined;
      this.pump();
    }, ms * (0.75 + this.#random() * 0.5));
  }
}
