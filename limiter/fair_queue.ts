import { type AdmissionQueue, type Waiter, WaitQueue } from "./wait_queue.ts";
import { type QueuePlaces, queueVictim } from "./queue_share.ts";

/** One team's waiters: interactive first, then bulk; and its place in virtual time. */
interface TeamLine {
  interactive: WaitQueue;
  bulk: WaitQueue;
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
      const n = line.interactive.live + line.bulk.live;
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
      line = { interactive: new WaitQueue(), bulk: new WaitQueue(), weight: 1, finish: 0 };
      this.#lines.set(name, line);
    }
    line.weight = w.weight ?? 1;
    w.line = w.bulk ? line.bulk : line.interactive;
    w.line.push(w);
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
      if (line.interactive.live + line.bulk.live === 0) {
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
    const w = best.interactive.live > 0 ? best.interactive.shift() : best.bulk.shift();
    if (w === undefined) return undefined;
    w.line!.live--;
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
      places.push({
        team: name,
        waiting: line.interactive.live + line.bulk.live,
        weight: line.weight,
      });
    }
    const victim = queueVictim(places, team ?? "", weight, limit);
    const line = victim === undefined ? undefined : this.#lines.get(victim);
    return line?.bulk.newest() ?? line?.interactive.newest();
  }
}
