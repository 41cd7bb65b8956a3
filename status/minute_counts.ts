import type { Clock, TimerHandle } from "../lib/mod.ts";
import {
  kvCall,
  type KvCallOptions,
  type KvCommit,
  type KvList,
  minuteCountKey,
  minuteCountRange,
  pruneOldDays,
  type SumSource,
} from "../kv/mod.ts";

/** One service's counts in one minute. */
export interface MinuteCount {
  minute: number;
  requests: number;
  refused: number;
  errors: number;
  upstream429: number;
}

const WHAT = ["requests", "refused", "errors", "upstream429"] as const;
type What = typeof WHAT[number];
const KV_NAME: Record<What, string> = {
  requests: "requests",
  refused: "refused",
  errors: "errors",
  upstream429: "upstream_429",
};

/** A service's current minute here: its counts, and how much of them KV already has. */
interface Tally extends MinuteCount {
  service: string;
  written: Record<What, number>;
}

/** Options for {@linkcode MinuteCounts}. */
export interface MinuteCountsOptions {
  kv: KvCommit & KvList;
  clock: Clock;
  call?: KvCallOptions;
  /** How often counts are added in KV, in ms. Default 5000. */
  flushMs?: number;
  /** Random numbers in [0, 1), for when the first prune falls. Default `Math.random`. */
  random?: () => number;
}

const MINUTE = 60_000;
/** Minute counts are kept this long in KV: the chart shows 15 minutes. */
const KEEP_MS = 3_600_000;
/**
 * How often old records are looked for: minute records every 10 minutes,
 * day records (kept 8 days) every hour. Each look is a KV list per
 * instance, and a list a minute was a tenth of the KV calls of a quiet
 * deployment (bench:regions). An instance's first look falls at a random
 * time within those periods, not at its first flush: on Deno Deploy
 * instances start often and live minutes, and a look at each start was
 * four KV calls per cold start (most of them finding nothing) that the
 * instances living long enough do for all.
 */
const PRUNE_MINUTES_EVERY_MS = 600_000;
const PRUNE_DAYS_EVERY_MS = 3_600_000;

/**
 * Requests, 429s and errors per service and minute, for the status page's
 * chart and its last five minutes: counted in memory (a request touches one
 * object), added in KV by one atomic `sum` commit every few seconds, so
 * that every instance reads and shows the same deployment-wide figures.
 * It also clears what sums leave behind (they carry no expiry): old minute
 * records, and the day counts of keys and teams (`DayBudgets`) after 8 days.
 */
export class MinuteCounts {
  #o: MinuteCountsOptions;
  #tallies = new Map<string, Tally>();
  /** Minutes that ended with counts not yet in KV. */
  #ended: Tally[] = [];
  /** When old records were last looked for; set back a random part of a period at the start. */
  #prunedAt: number;
  #prunedDaysAt: number;
  #timer: TimerHandle | undefined;
  /** Counters whose sums go in this one's commit (see {@linkcode MinuteCounts.join}). */
  #joined: SumSource[] = [];
  /** The flush under way, and the one asked for meanwhile (see {@linkcode MinuteCounts.flush}). */
  #flushing: Promise<void> | undefined;
  #nextFlush: Promise<void> | undefined;

  constructor(options: MinuteCountsOptions) {
    this.#o = options;
    const now = options.clock.now();
    const random = options.random ?? Math.random;
    this.#prunedAt = now - random() * PRUNE_MINUTES_EVERY_MS;
    this.#prunedDaysAt = now - random() * PRUNE_DAYS_EVERY_MS;
  }

  /** Counts one answer to a client. */
  answered(service: string, status: number, now: number): void {
    const t = this.#tally(service, now);
    t.requests++;
    if (status === 429) t.refused++;
    else if (status >= 500) t.errors++;
  }

  /** Counts a 429 from the upstream. */
  upstream429(service: string, now: number): void {
    this.#tally(service, now).upstream429++;
  }

  /** Starts adding the counts in KV every `flushMs`. */
  start(): void {
    const every = this.#o.flushMs ?? 5000;
    const tick = () => {
      this.#timer = this.#o.clock.setTimeout(tick, every);
      this.flush().catch(() => {});
    };
    this.#timer = this.#o.clock.setTimeout(tick, every);
  }

  /** Stops the timer and adds what is left. */
  async close(): Promise<void> {
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    await this.flush().catch(() => {});
  }

  /**
   * Adds the counts of a write-behind counter (a service's key days) to each
   * flush's commit: one KV call every `flushMs` for all of them.
   */
  join(source: SumSource): void {
    this.#joined.push(source);
  }

  /**
   * Adds the counts not yet in KV (and the joined counters'), in one atomic
   * commit. One flush at a time: a flush asked for while one is under way
   * (the shutdown's during the timer's, on slow KV) runs after it, so that
   * both never add the same counts from the same `written` marks.
   */
  flush(): Promise<void> {
    if (this.#flushing === undefined) return this.#startFlush();
    return this.#nextFlush ??= this.#flushing.catch(() => {}).then(() => {
      this.#nextFlush = undefined;
      return this.#startFlush();
    });
  }

  #startFlush(): Promise<void> {
    const run: Promise<void> = this.#flushOnce().finally(() => {
      if (this.#flushing === run) this.#flushing = undefined;
    });
    this.#flushing = run;
    return run;
  }

  async #flushOnce(): Promise<void> {
    // The minutes ended so far; one that ends during the commit waits for the next flush.
    const ended = this.#ended;
    this.#ended = [];
    const tallies = [...ended, ...this.#tallies.values()];
    const op = this.#o.kv.atomic();
    const adds: Array<[Tally, What, number]> = [];
    for (const t of tallies) {
      for (const w of WHAT) {
        const n = t[w] - t.written[w];
        if (n <= 0) continue;
        op.sum(minuteCountKey(t.service, t.minute, KV_NAME[w]), BigInt(n));
        adds.push([t, w, n]);
      }
    }
    const joined = this.#joined.flatMap((source) => source.sumInto(op) ?? []);
    if (adds.length === 0 && joined.length === 0) return;
    // Sums cannot carry an expiry: the records are found by range and old ones deleted by prune().
    const committed = await kvCall(() => op.commit(), this.#o.call ?? {}).catch((e) => {
      joined.forEach((told) => told(false));
      this.#ended = [...ended, ...this.#ended];
      throw e;
    });
    joined.forEach((told) => told(committed.ok));
    for (const [t, w, n] of adds) t.written[w] += n;
    await this.#prune(tallies).catch(() => {});
  }

  /** The deployment's counts of `service` for the minutes from `fromMinute` on (oldest first). */
  async read(service: string, fromMinute: number, toMinute: number): Promise<MinuteCount[]> {
    const out = new Map<number, MinuteCount>();
    await kvCall(async () => {
      const range = minuteCountRange(service, fromMinute, toMinute);
      for await (const e of this.#o.kv.list<Deno.KvU64>(range, { consistency: "eventual" })) {
        const minute = Number(e.key[2]);
        const c = out.get(minute) ??
          { minute, requests: 0, refused: 0, errors: 0, upstream429: 0 };
        const what = WHAT.find((w) => KV_NAME[w] === e.key[3]);
        if (what) c[what] = Number(e.value.value);
        out.set(minute, c);
      }
    }, this.#o.call ?? {});
    return [...out.values()].sort((a, b) => a.minute - b.minute);
  }

  #tally(service: string, now: number): Tally {
    const minute = now - (now % MINUTE);
    let t = this.#tallies.get(service);
    if (t === undefined || t.minute !== minute) {
      if (t !== undefined) this.#ended.push(t);
      t = {
        service,
        minute,
        requests: 0,
        refused: 0,
        errors: 0,
        upstream429: 0,
        written: { requests: 0, refused: 0, errors: 0, upstream429: 0 },
      };
      this.#tallies.set(service, t);
    }
    return t;
  }

  /** Deletes minute records older than an hour, and old day records (see PRUNE_MINUTES_EVERY_MS). */
  async #prune(tallies: Tally[]): Promise<void> {
    const now = this.#o.clock.now();
    if (now - this.#prunedAt < PRUNE_MINUTES_EVERY_MS) return;
    this.#prunedAt = now;
    for (const service of new Set(tallies.map((t) => t.service))) {
      const range = minuteCountRange(service, 0, now - KEEP_MS);
      await kvCall(async () => {
        const op = this.#o.kv.atomic();
        let n = 0;
        for await (const e of this.#o.kv.list(range, { limit: 200 })) {
          op.delete(e.key);
          n++;
        }
        if (n > 0) await op.commit();
      }, this.#o.call ?? {});
    }
    // The day records of keys and teams, every instance's (summed records carry no expiry).
    if (now - this.#prunedDaysAt < PRUNE_DAYS_EVERY_MS) return;
    this.#prunedDaysAt = now;
    await pruneOldDays(this.#o.kv, now, this.#o.call);
  }
}
