import type { Clock, TimerHandle } from "../lib/mod.ts";
import {
  type Admission,
  grant,
  GRANTED,
  type QueuePlaces,
  queueVictim,
  type RefusalReason,
  retryAfterMs,
  TimeoutSweeper,
  type Waiter,
  waitIn,
} from "../limiter/mod.ts";
import { allocate, localPart, type TeamDemand } from "./fair_share.ts";
import { TeamLane } from "./team_lane.ts";
import type { DemandBoard, InstanceDemand } from "./share_board.ts";

/** Options for {@linkcode FairGate}. */
export interface FairGateOptions {
  /** The service's rate (rps): what the teams share. */
  rate: number;
  /** The service's burst. Default 1. */
  burst?: number;
  /** Where instances exchange their demand. */
  board: DemandBoard;
  clock: Clock;
  /** How often demand is exchanged while any team has some, in ms. Default 250. */
  periodMs?: number;
  /** Told when an exchange fails (the last shares stay in force). */
  onError?: (e: unknown) => void;
  /** Most requests held here at once; more are refused (`queue_full`). Default 200. */
  queueLimit?: number;
}

/** Passed: the request may go on to the service's own queue. */
export type GatePass = Admission;

/**
 * A service's fair share between teams, agreed across instances. Each
 * instance tells the board its demand by team (requests arriving per second
 * plus its backlog); every instance computes the same weighted max-min
 * shares of the service's rate from the same records (`fair_share.ts`),
 * and paces each team here at its part of its share. While the demands fit
 * in the rate no team is held back and a request passes without waiting.
 * A team that has just arrived is paced at its share at once, before any
 * exchange, so its first request passes at once.
 */
export class FairGate {
  #lanes = new Map<string, TeamLane>();
  #rate: number;
  #burst: number;
  #board: DemandBoard;
  #clock: Clock;
  #periodMs: number;
  #onError: (e: unknown) => void;
  #deadlines: TimeoutSweeper;
  #shares: Map<string, number> | undefined;
  #ticking = false;
  #tick: TimerHandle | undefined;
  #closed = false;
  #queueLimit: number;

  constructor(options: FairGateOptions) {
    this.#queueLimit = options.queueLimit ?? 200;
    this.#rate = options.rate;
    this.#burst = options.burst ?? 1;
    this.#board = options.board;
    this.#clock = options.clock;
    this.#periodMs = options.periodMs ?? 250;
    this.#onError = options.onError ?? (() => {});
    this.#deadlines = new TimeoutSweeper(this.#clock, 50);
    if (!(this.#rate > 0)) throw new RangeError(`rate must be > 0 (got ${this.#rate})`);
    if (!(this.#periodMs > 0)) throw new RangeError(`periodMs must be > 0 (got ${this.#periodMs})`);
  }

  /**
   * How many instances' worth of the service this one may use, for lease
   * sizing: the rate over this instance's paces (an instance that holds
   * three quarters of the rate leases as one of 1.33 instances would), or
   * undefined while no team is held back here.
   */
  instancesWorth(): number | undefined {
    if (this.#shares === undefined) return undefined;
    let mine = 0;
    for (const lane of this.#lanes.values()) {
      if (lane.share === Infinity) return undefined;
      mine += lane.share;
    }
    return mine > 0 ? this.#rate / mine : undefined;
  }

  /**
   * The pace `team` passes at here while teams are held back (requests per
   * second: this instance's part of its share), or undefined when none is.
   * The service's own lines weigh a team by it (`gateway/stages/team_stages.ts`
   * waitOptions), so that they let the teams out in the proportions the gate
   * let them in. Weighed by the teams' configured weights instead, an
   * instance whose tokens run short gave a team the weight's part of them
   * even where the gate had given that team more than that part of its
   * share here (its demand was here), and the team fell short of its share
   * everywhere (a 3:1 run measured 4.07).
   */
  paceOf(team: string): number | undefined {
    if (this.#shares === undefined) return undefined;
    const rate = this.#lanes.get(team)?.rate;
    return rate !== undefined && rate > 0 && Number.isFinite(rate) ? rate : undefined;
  }

  /** The teams' shares of the service (requests per second), or undefined when none is held back. */
  get shares(): ReadonlyMap<string, number> | undefined {
    return this.#shares;
  }

  /**
   * A request of `team` arrives: passes at once (usually), or waits, FIFO
   * within its team and interactive before bulk, until its team's pace lets
   * it through or `deadline` passes. Call {@linkcode FairGate.sent} once it
   * goes upstream or ends.
   */
  enter(
    team: string,
    weight: number,
    bulk: boolean,
    deadline: number,
    signal?: AbortSignal,
  ): GatePass | Promise<GatePass> {
    const now = this.#clock.now();
    let lane = this.#lanes.get(team);
    if (lane === undefined) {
      lane = new TeamLane();
      this.#lanes.set(team, lane);
      lane.rate = lane.share = this.#newcomerRate(weight);
    }
    lane.weight = weight;
    lane.arrivals.count(1, now);
    lane.pending++;
    this.#startTicking();
    if (lane.line.live === 0 && lane.take(now, this.#shares !== undefined, this.#burst)) {
      return GRANTED;
    }
    const refusal = (reason: RefusalReason) => ({
      ok: false as const,
      reason,
      retryAfterMs: retryAfterMs(lane!.line.live + 1, lane!.rate),
    });
    if (this.#waiting() >= this.#queueLimit) {
      // Full: the newcomer's team may be owed a place that another team's flood holds.
      const gives = this.#giveWay(team, weight);
      if (gives === undefined) {
        lane.pending--;
        return refusal("queue_full");
      }
      gives.refuse!("queue_full");
    }
    const passed = waitIn(lane.line, { deadline, signal, bulk }, this.#deadlines, refusal, now);
    this.#pump(lane);
    return passed;
  }

  /** Requests waiting here, all teams. */
  #waiting(): number {
    let n = 0;
    for (const lane of this.#lanes.values()) n += lane.line.live;
    return n;
  }

  /** The newest waiter (bulk first) of the team furthest over its share of the places, if `team` is owed one. */
  #giveWay(team: string, weight: number): Waiter | undefined {
    const places: QueuePlaces[] = [];
    for (const [name, lane] of this.#lanes) {
      places.push({ team: name, waiting: lane.line.live, weight: lane.weight });
    }
    const victim = queueVictim(places, team, weight, this.#queueLimit);
    return victim === undefined ? undefined : this.#lanes.get(victim)?.line.newest();
  }

  /** A request of `team` that entered has gone upstream, or ended: it no longer counts as backlog. */
  sent(team: string): void {
    const lane = this.#lanes.get(team);
    if (lane && lane.pending > 0) lane.pending--;
  }

  /** Refuses every waiter (`closing`) and stops exchanging. */
  close(): void {
    this.#closed = true;
    if (this.#tick !== undefined) this.#clock.clearTimeout(this.#tick);
    for (const lane of this.#lanes.values()) {
      if (lane.timer !== undefined) this.#clock.clearTimeout(lane.timer);
      for (let w = lane.line.shift(); w; w = lane.line.shift()) {
        grant(w, { ok: false, reason: "closing", retryAfterMs: 1000 });
      }
    }
  }

  #pump(lane: TeamLane): void {
    const now = this.#clock.now();
    while (lane.line.live > 0) {
      if (!lane.take(now, this.#shares !== undefined, this.#burst)) {
        if (lane.timer === undefined && lane.rate > 0) {
          const tolerance = lane.tolerance(this.#shares !== undefined, this.#burst) *
            (1000 / lane.rate);
          lane.timer = this.#clock.setTimeout(() => {
            lane.timer = undefined;
            this.#pump(lane);
          }, Math.max(1, lane.tat - tolerance - now));
        }
        return;
      }
      grant(lane.line.shift()!);
    }
  }

  /** A team seen for the first time while others are held back: its weighted share, wholly here. */
  #newcomerRate(weight: number): number {
    if (this.#shares === undefined) return this.#rate;
    let weights = weight;
    for (const name of this.#shares.keys()) weights += this.#lanes.get(name)?.weight ?? 1;
    return (this.#rate * weight) / weights;
  }

  #startTicking(): void {
    if (this.#ticking || this.#closed) return;
    this.#ticking = true;
    this.#tick = this.#clock.setTimeout(() => this.#exchange(), this.#periodMs);
  }

  async #exchange(): Promise<void> {
    const now = this.#clock.now();
    const mine: InstanceDemand = {};
    for (const [name, lane] of this.#lanes) {
      const demand = lane.demand(now);
      if (demand > 0) mine[name] = { weight: lane.weight, demand };
    }
    try {
      const all = await this.#board.exchange(mine);
      this.#apply(mine, all);
    } catch (e) {
      this.#onError(e);
    }
    if (this.#closed) return;
    const idle = Object.keys(mine).length === 0;
    if (idle) {
      this.#ticking = false;
      this.#lanes.clear();
      return;
    }
    this.#tick = this.#clock.setTimeout(() => this.#exchange(), this.#periodMs);
  }

  /** Sets each team's pace here from every instance's demand. */
  #apply(mine: InstanceDemand, all: InstanceDemand[]): void {
    const total = new Map<string, TeamDemand>();
    for (const instance of all) {
      for (const [name, d] of Object.entries(instance)) {
        const t = total.get(name);
        if (t) {
          t.demand += d.demand;
          t.weight = Math.max(t.weight, d.weight);
        } else total.set(name, { weight: d.weight, demand: d.demand });
      }
    }
    const wasHeld = this.#shares !== undefined;
    this.#shares = allocate(this.#rate, total);
    const now = this.#clock.now();
    for (const [name, lane] of this.#lanes) {
      const share = this.#shares?.get(name);
      // Its demand here now, not as sent: a team that arrived while the
      // exchange was out is in no record yet, and its part must not be 0.
      const here = lane.demand(now);
      const everywhere = (total.get(name)?.demand ?? 0) - (mine[name]?.demand ?? 0) + here;
      lane.share = this.#shares === undefined
        ? this.#rate
        : share === undefined
        ? this.#newcomerRate(lane.weight)
        : localPart(share, here, everywhere);
      lane.pace(lane.share, now);
      if (!wasHeld && this.#shares !== undefined && lane.rate > 0) {
        // Teams are held back from now on: what a team let past the gate
        // before (still waiting for a token) counts against its pace, or it
        // would be served on top of its share.
        const past = lane.pending - lane.line.live;
        lane.tat = Math.max(lane.tat, now + (Math.max(0, past) * 1000) / lane.rate);
      }
      if (lane.timer !== undefined) this.#clock.clearTimeout(lane.timer);
      lane.timer = undefined;
      this.#pump(lane);
    }
  }
}
