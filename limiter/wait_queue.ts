import type { Admission } from "./admission.ts";

/** A request waiting for a slot or a token. */
export interface Waiter {
  resolve: (a: Admission) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
  cancelDeadline?: () => void;
  done: boolean;
  /** The team it waits for (see `fair_queue.ts`); undefined = one shared line. */
  team?: string;
  /** The team's weight; default 1. */
  weight?: number;
  /** Bulk lane: goes after the team's interactive requests. */
  bulk?: boolean;
  /** The line it sits in, where a queue keeps several (`fair_queue.ts`). */
  line?: WaitQueue;
  /** When it began to wait (the clock's ms), for the wait the queue shows now. */
  since?: number;
  /** Refuses it where it waits (set by the limiter that queued it). */
  refuse?: (reason: "queue_full") => void;
}

/**
 * Where waiting requests line up. The limiter grants in the order `shift()`
 * gives; a fair queue across teams implements the same interface.
 */
export interface AdmissionQueue {
  /** Waiters still waiting. */
  live: number;
  /** Adds a waiter; `front` puts it first (a retry already holding a slot). */
  push(w: Waiter, front?: boolean): void;
  /** The next waiter to grant, removed; settled ones are skipped. */
  shift(): Waiter | undefined;
  /** A waiter left early (abort, deadline): it is settled and still in the queue. */
  left(w: Waiter): void;
  /** Waiters by team, where the queue keeps them apart. */
  byTeam?(): Record<string, number>;
  /**
   * The queue is full and a waiter of `team` arrives: the waiter that gives
   * its place to it (see `queue_share.ts`), or undefined to refuse the newcomer.
   */
  giveWay?(team: string | undefined, weight: number, limit: number): Waiter | undefined;
}

/** A FIFO queue that removes in O(1) from the front and skips settled entries lazily. */
export class WaitQueue implements AdmissionQueue {
  #items: Waiter[] = [];
  #head = 0;
  live = 0;

  push(w: Waiter, front = false): void {
    if (front) {
      if (this.#head > 0) this.#items[--this.#head] = w;
      else this.#items.unshift(w);
    } else this.#items.push(w);
    this.live++;
  }

  /**
   * Called when a waiter leaves early (abort, deadline): drops settled
   * entries once they are most of the queue, so that a mass abort frees
   * their memory at once rather than at the next grant.
   */
  left(_w?: Waiter): void {
    this.live--;
    const held = this.#items.length - this.#head;
    if (this.live === 0) {
      this.#items = [];
      this.#head = 0;
    } else if (held > 1024 && this.live * 2 < held) {
      this.#items = this.#items.slice(this.#head).filter((w) => !w.done);
      this.#head = 0;
    }
  }

  /** The newest waiter still waiting (it stays in the queue). */
  newest(): Waiter | undefined {
    for (let i = this.#items.length - 1; i >= this.#head; i--) {
      if (!this.#items[i].done) return this.#items[i];
    }
    return undefined;
  }

  /** The oldest waiter still waiting, removed from the queue. */
  shift(): Waiter | undefined {
    while (this.#head < this.#items.length) {
      const w = this.#items[this.#head++];
      if (!w.done) {
        this.#compact();
        return w;
      }
    }
    this.#compact();
    return undefined;
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    }
  }
}
