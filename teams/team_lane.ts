/**
 * One team at a service's fair gate ({@linkcode FairGate}): its weight, its
 * demand, its pace here (GCRA, `gcraPass`) and the line its waiters wait in.
 *
 * @module
 */
import type { TimerHandle } from "../lib/mod.ts";
import { DemandMeter, gcraPass, LaneLine } from "../limiter/mod.ts";

/** One team at this gate. */
export class TeamLane {
  weight = 1;
  arrivals = new DemandMeter();
  /** Entered and not yet sent upstream (its backlog, wherever it waits). */
  pending = 0;
  /** This instance's pace for the team, per second: its part of the team's share, or the service's rate. */
  rate = Infinity;
  /** The same, kept for lease sizing. */
  share = Infinity;
  /** GCRA: when the team's next request may pass. */
  tat = 0;
  /** Its waiters, interactive before bulk (the limiter's lane discipline). */
  line = new LaneLine();
  timer: TimerHandle | undefined;

  /** Its demand here, per second: requests arriving, plus its backlog spread over a second. */
  demand(now: number): number {
    return this.arrivals.rate(now) + this.pending;
  }

  /**
   * Paces the team at `rate` (per second) from `now`. Passes it is behind
   * (`tat` ahead of now) stay owed as passes, not as time: at a pace twice
   * as fast they are made up twice as fast. Kept as time, a debt run up at
   * a slow pace held the team back long after its pace had risen.
   */
  pace(rate: number, now: number): void {
    const owedMs = this.tat - now;
    if (owedMs > 0 && this.rate > 0 && rate > 0 && Number.isFinite(this.rate)) {
      this.tat = now + (owedMs * this.rate) / rate;
    }
    this.rate = rate;
  }

  /**
   * Spends one pass of the team's pace if it has one now (GCRA). Held back,
   * a team may run 100 ms of its pace ahead (one pass at least); otherwise it is paced as the
   * service itself is (its rate and burst), which holds back no request the
   * service would let out, and keeps what a team sends before the instances
   * first agree on shares to a burst.
   */
  take(now: number, held: boolean, serviceBurst: number): boolean {
    if (this.rate <= 0) return false;
    const interval = 1000 / this.rate;
    const tat = gcraPass(this.tat, now, interval, this.tolerance(held, serviceBurst) * interval);
    if (tat === undefined) return false;
    this.tat = tat;
    return true;
  }

  /**
   * Passes a team may take ahead of its pace (see `take`). Held back, at
   * least one: a timer that fires late (a busy event loop) is made up by the
   * next pass; with none, every late firing was lost for good, and a team
   * paced slowly here (a weight-1 team split over instances: one pass per
   * 600 ms) fell a steady few per cent under its share.
   */
  tolerance(held: boolean, serviceBurst: number): number {
    const burst = !held ? serviceBurst : Math.max(2, Math.ceil(this.rate * 0.1));
    return Math.max(0, burst - 1);
  }
}
