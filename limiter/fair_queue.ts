import { type AdmissionQueue, type Waiter, WaitQueue } from "./wait_queue.ts";
import { type QueuePlaces, queueVictim } from "./queue_share.ts";

/**
 * One team's waiters, the lane discipline every team queue keeps (this
 * fair queue, and the teams' fair gate): interactive before bulk, each
 * first in first out; the newest bulk waiter is the first to give way.
 */
export class LaneLine {
  readonly interactive: WaitQueue = new WaitQueue();
  readonly bulk: WaitQueue = new WaitQueue();

  /** Waiters still waiting. */
  get live(): number {
    return this.interactive.live + this.bulk.live;
  }

  push(w: Waiter): void {
    w.line = w.bulk ? this.bulk : this.interactive;
    w.line.push(w);
  }

  /** The next waiter to serve, removed (the caller settles it). */
  shift(): Waiter | undefined {
    const w = this.interactive.live > 0 ? this.interactive.shift() : this.bulk.shift();
    if (w) w.line!.live--;
    return w;
  }

  /** A waiter left early (abort, deadline, refused): it is settled and still in its queue. */
  left(w: Waiter): void {
    w.line?.left(w);
  }

  /** The newest waiter still waiting, bulk first: who gives its place away. */
  newest(): Waiter | undefined {
    return this.bulk.newest() ?? this.interactive.newest();
  }
}

/** One team's waiters and its place in virtual time. */
interface TeamLine {
  lane: LaneLine;
  weight: number;
  /** Virtual time at which the team's last grant finished (start-time fair queueing). */
  finish: number;
}

/**
 * Waiters of several teams, granted in turns by weight (start-time fair
 * queueing): a team's next turn starts at `max(its last finish, now in
 * virtual time)` and lasts `1/weight`, and the earliest start goes first.
 * A team that was idle starts at the current virtual time, so its first
 * request goes ahead of a flooding team's backlog; within a team, first in
 * first out, interactive before bulk. Retries already holding a slot
 * (`front`) go before everyone. Waiters without a team share one line.
 */
export class FairQueue implements AdmissionQueue {
  live = 0;
  #lines = new Map<string, TeamLine>();

  /** Waiters by team (`""` for those without one), for the status page. */
  byTeam(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, line] of this.#lines) {
      const n = line.lane.live;
      if (n > 0) out[name] = n;
    }
    return out;
  }
  #front = new WaitQueue();
  #virtual = 0;

  push(w: Waiter, front = false): void {
    this.live++;
    if (front) {
      w.line = this.#front;
      this.#front.push(w, true);
      return;
    }
    const name = w.team ?? "";
    let line = this.#lines.get(name);
    if (line === undefined) {
      line = { lane: new LaneLine(), weight: 1, finish: 0 };
      this.#lines.set(name, line);
    }
    line.weight = w.weight ?? 1;
    line.lane.push(w);
  }

  shift(): Waiter | undefined {
    // As with WaitQueue, the caller lowers `live` for a waiter it takes; the lines' own counts are kept here.
    const first = this.#front.shift();
    if (first) {
      this.#front.live--;
      return first;
    }
    let best: TeamLine | undefined;
    let bestStart = Infinity;
    for (const [name, line] of this.#lines) {
      if (line.lane.live === 0) {
        // Idle: forgotten, so the map holds only teams that wait.
        if (line.finish <= this.#virtual) this.#lines.delete(name);
        continue;
      }
      const start = Math.max(line.finish, this.#virtual);
      if (start < bestStart) {
        bestStart = start;
        best = line;
      }
    }
    if (best === undefined) return undefined;
    const w = best.lane.shift();
    if (w === undefined) return undefined;
    this.#virtual = bestStart;
    best.finish = bestStart + 1 / best.weight;
    return w;
  }

  left(w: Waiter): void {
    this.live--;
    w.line?.left(w);
  }

  /** The newest waiter (bulk first) of the team furthest over its share, if the newcomer is owed a place. */
  giveWay(team: string | undefined, weight: number, limit: number): Waiter | undefined {
    const places: QueuePlaces[] = [];
    for (const [name, line] of this.#lines) {
      places.push({ team: name, waiting: line.lane.live, weight: line.weight });
    }
    const victim = queueVictim(places, team ?? "", weight, limit);
    const line = victim === undefined ? undefined : this.#lines.get(victim);
    return line?.lane.newest();
  }
}
