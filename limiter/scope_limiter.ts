import type { CapacityLevels, CapacityStore, ServiceLimits, Waiters } from "./capacity_store.ts";
import type { Clock } from "../lib/mod.ts";
import type { Admission, RefusalReason, SlotAdmission, WaitOptions } from "./admission.ts";
import { SlotLease } from "./slot_lease.ts";
import { TimeoutSweeper } from "../lib/timeout_sweeper.ts";
import { TokenSupply } from "./token_supply.ts";
import { type AdmissionQueue, WaitQueue } from "./wait_queue.ts";
import { drainMs, GRANTED, grantNext, refuseAll, retryAfterMs, waitIn } from "./waiting.ts";

/** Options for {@linkcode ScopeLimiter}. */
export interface ScopeLimiterOptions {
  /** Where tokens and slots come from. */
  store: CapacityStore;
  clock: Clock;
  /** Most requests waiting for admission (an in-flight slot) at once. Default 200. */
  queueLimit?: number;
  /** Lifetime τ of leased tokens in ms: unspent ones are dropped after it. Default 2000. */
  leaseMs?: number;
  /** How long held slots stay valid without renewal, in ms. Default 15000. */
  slotTtlMs?: number;
  /** Live instances sharing the store, for lease sizing. Default: always 1. */
  peers?: () => number;
  /** How late a queue deadline may be noticed, in ms. Default 100. */
  deadlineResolutionMs?: number;
  /** Where requests wait for a slot, in the order it gives. Default: first in, first out. */
  slotQueue?: AdmissionQueue;
  /** Where slot holders wait for a token, in the order it gives. Default: first in, first out. */
  tokenQueue?: AdmissionQueue;
  /** Random numbers in [0, 1) for the jitter of retries and polls. Default: `Math.random`. */
  random?: () => number;
}

/** Counters for benchmarks and the status page. */
export interface LimiterStats {
  tokenLeases: number;
  tokensLeased: number;
  tokensSpent: number;
  tokensStranded: number;
  slotWrites: number;
}

export { SLOT_LINGER_MS } from "./slot_lease.ts";

/**
 * Paces one scope — a service, a team on it, or a key (`LimitScope`) — for
 * one instance: a FIFO queue of requests waiting for
 * an in-flight slot, then a FIFO queue of slot holders waiting for a token.
 * Tokens and slots are leased from a {@linkcode CapacityStore}; while a
 * local stock lasts, a request costs no store call at all.
 */
export class ScopeLimiter {
  readonly stats: LimiterStats = {
    tokenLeases: 0,
    tokensLeased: 0,
    tokensSpent: 0,
    tokensStranded: 0,
    slotWrites: 0,
  };
  #store: CapacityStore;
  #clock: Clock;
  #limits: ServiceLimits;
  /** How long the request the queues let out last had waited, in ms. */
  #lastWaitMs = 0;
  #queueLimit: number;
  #leaseMs: number;
  #slotTtlMs: number;
  #peers: () => number;
  /** Queue deadlines, all on one timer: a waiting request holds no runtime timer. */
  #deadlines: TimeoutSweeper;
  #random: () => number;

  #tokenQueue: AdmissionQueue;
  /** The tokens this instance holds. */
  #supply: TokenSupply;
  #slotQueue: AdmissionQueue;
  /** The in-flight slots this instance holds. */
  #slots: SlotLease;
  #closed = false;

  constructor(limits: ServiceLimits, options: ScopeLimiterOptions) {
    this.#limits = limits;
    this.#store = options.store;
    this.#clock = options.clock;
    this.#queueLimit = options.queueLimit ?? 200;
    this.#leaseMs = options.leaseMs ?? 2000;
    this.#slotTtlMs = options.slotTtlMs ?? 15_000;
    this.#peers = options.peers ?? (() => 1);
    this.#deadlines = new TimeoutSweeper(this.#clock, options.deadlineResolutionMs ?? 100);
    this.#slotQueue = options.slotQueue ?? new WaitQueue();
    this.#tokenQueue = options.tokenQueue ?? new WaitQueue();
    this.#random = options.random ?? Math.random;
    // What the slots and the tokens share: the store, time, the peers, jitter, the counts.
    const shared = {
      store: this.#store,
      clock: this.#clock,
      peers: this.#peers,
      random: this.#random,
      stats: this.stats,
    };
    this.#slots = new SlotLease({
      ...shared,
      maxConn: limits.maxConn,
      ttlMs: this.#slotTtlMs,
      waiters: this.#waitersOf(this.#slotQueue),
    });
    this.#supply = new TokenSupply({
      ...shared,
      limits,
      leaseMs: this.#leaseMs,
      waiters: this.#waitersOf(this.#tokenQueue),
    });
    if (!(this.#queueLimit >= 0)) {
      throw new RangeError(`queueLimit must be >= 0 (got ${this.#queueLimit})`);
    }
    if (!(this.#leaseMs > 0)) throw new RangeError(`leaseMs must be > 0 (got ${this.#leaseMs})`);
  }

  /** How full the shared capacity is now (the status); null where none is shared. */
  levels(): Promise<CapacityLevels | null> {
    return this.#store.levels?.() ?? Promise.resolve(null);
  }

  /** Requests waiting for a slot or a token. */
  get waiting(): number {
    return this.#slotQueue.live + this.#tokenQueue.live;
  }

  /** Requests waiting here, by team (`""`: without a team), where the queues keep them apart. */
  waitingByTeam(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const q of [this.#slotQueue, this.#tokenQueue]) {
      for (const [team, n] of Object.entries(q.byTeam?.() ?? {})) out[team] = (out[team] ?? 0) + n;
    }
    return out;
  }

  /** Slots this instance uses now. */
  get inFlight(): number {
    return this.#slots.inUse;
  }

  /**
   * An in-flight slot at once, or undefined when the caller must wait for
   * one with {@linkcode ScopeLimiter.acquireSlot} (none free, or others
   * already waiting). No promise: the usual request never waits.
   *
   * @param now The clock's reading, when the caller has just taken one. Default: read now.
   */
  trySlot(now: number = this.#clock.now()): SlotAdmission | undefined {
    if (this.#slotQueue.live > 0 || !this.#slots.free(now)) return undefined;
    return { ok: true, release: this.#slots.take() };
  }

  /** Waits, first in first out, for one in-flight slot. */
  acquireSlot(options: WaitOptions): Promise<SlotAdmission> {
    const free = this.trySlot();
    if (free) return Promise.resolve(free);
    return this.#enqueue(this.#slotQueue, options, () => this.#slots.pump()).then((a) =>
      a.ok ? { ok: true, release: this.#slots.releaser() } : a
    );
  }

  /**
   * Spends a token at once and returns true, or returns false when the
   * caller must wait for one with {@linkcode ScopeLimiter.takeToken}
   * (none due yet, or others already waiting).
   *
   * @param now The clock's reading, when the caller has just taken one. Default: read now.
   */
  tryToken(now: number = this.#clock.now()): boolean {
    if (this.#tokenQueue.live > 0 || !this.#supply.spend(now)) return false;
    this.#supply.prefetch(now);
    return true;
  }

  /** Waits, first in first out, for one token; each upstream attempt takes one. */
  takeToken(options: WaitOptions): Promise<Admission> {
    if (this.tryToken()) return Promise.resolve(GRANTED);
    return this.#enqueue(this.#tokenQueue, options, () => this.#supply.pump());
  }

  /**
   * The upstream says only `available` tokens are left (its rate-limit
   * headers): tokens held here beyond that are dropped, and the shared
   * store lets out no more than that from now on.
   */
  leaveAtMost(available: number): Promise<void> {
    this.#supply.leaveAtMost(available);
    return this.#store.leaveAtMost?.(available) ?? Promise.resolve();
  }

  /**
   * Shutting down: refuses every waiter (`closing`), hands unused tokens and
   * idle slots back to the store, and stops timers. Slots still in use are
   * handed back one by one as their requests finish.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const queue of [this.#slotQueue, this.#tokenQueue]) {
      refuseAll(queue, this.#refuse("closing"));
    }
    await Promise.allSettled([this.#slots.close(), this.#supply.close()]);
  }

  /** After close: resolves once the slot writes made so far have landed (or failed). */
  settled(): Promise<void> {
    return this.#slots.settled();
  }

  /** Renews held slots so other instances keep counting them; call every slotTtlMs/3. */
  heartbeat(): Promise<void> {
    return this.#slots.heartbeat();
  }

  #enqueue(queue: AdmissionQueue, options: WaitOptions, pump: () => void): Promise<Admission> {
    const now = this.#clock.now();
    if (options.signal?.aborted) return Promise.resolve(this.#refuse("aborted"));
    if (this.#closed) return Promise.resolve(this.#refuse("closing"));
    // Token waiters already hold a slot (at most maxConn of them): only the admission queue is bounded.
    if (queue === this.#slotQueue && queue.live >= this.#queueLimit) {
      // Full: the newcomer's team may be owed a place that another team's flood holds.
      const gives = queue.giveWay?.(options.team, options.weight ?? 1, this.#queueLimit);
      if (gives === undefined) return Promise.resolve(this.#refuse("queue_full"));
      gives.refuse!("queue_full");
    }
    if (options.deadline <= now) return Promise.resolve(this.#refuse("queue_timeout"));
    const admitted = waitIn(queue, options, this.#deadlines, this.#refusal, now);
    pump();
    return admitted;
  }

  #refusal = (reason: RefusalReason) => this.#refuse(reason);

  /** A line as the slots or the tokens see it: how many wait, and grant the next. */
  #waitersOf(queue: AdmissionQueue): Waiters {
    return { waiting: () => queue.live, grant: () => void this.#grant(queue) };
  }

  #grant(queue: AdmissionQueue): boolean {
    const w = grantNext(queue);
    if (!w) return false;
    this.#lastWaitMs = this.#clock.now() - (w.since ?? 0);
    return true;
  }

  #refuse(reason: RefusalReason): Admission & { ok: false } {
    return { ok: false, reason, retryAfterMs: retryAfterMs(this.waiting + 1, this.#limits.rps) };
  }

  /**
   * How long the requests waiting here take to leave at the service's rate
   * (0 when none waits): what a request arriving now expects to wait. The
   * model groups' choice of a target reads it, no KV call.
   */
  backlogMs(): number {
    const ahead = this.waiting;
    // The rate drains the queue across the deployment; this instance gets a
    // share of it, so the wait the latest request let out here had is the
    // truer figure while the queue is not empty.
    return ahead === 0 ? 0 : Math.max(drainMs(ahead, this.#limits.rps), this.#lastWaitMs);
  }
}
