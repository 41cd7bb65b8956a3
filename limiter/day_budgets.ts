import type { Clock, TimerHandle } from "../lib/mod.ts";
import { casUpdate, kvCall, type KvCallOptions, type KvCas, u64 } from "../kv/mod.ts";
import { budgetDay } from "./day.ts";
import {
  type BudgetVerdict,
  chunkSize,
  type DailyBudget,
  type DayState,
  exhausted,
  newDayState,
  refusal,
  tokensOver,
} from "./day_policy.ts";

export type { BudgetVerdict, DailyBudget };

/** Whose day is counted: a team, or a provider key with its `rpd`. */
export interface Budgeted {
  name: string;
  daily: DailyBudget;
}

/** Options for {@linkcode DayBudgets}. */
export interface DayBudgetsOptions {
  kv: KvCas;
  clock: Clock;
  /** Where the budget day starts, in ms after UTC midnight. Default 0. */
  dayStartMs?: number;
  /** Live instances sharing the budgets (chunks are sized by it). Default: always 1. */
  peers?: () => number;
  /** How often counts are written and read back, in ms. Default 1000. */
  flushMs?: number;
  call?: KvCallOptions;
  /** Where a day's counts are kept (`teamUsageKey` for teams, `keyDayUsageKey` for keys). */
  usageKey: (name: string, day: string, what: "requests" | "tokens") => Deno.KvKey;
}

/** A reservation unused for this long goes back, so that other instances may spend it. */
const IDLE_RETURN_MS = 2000;
const OK: BudgetVerdict = Object.freeze({ ok: true });

/**
 * Daily budgets shared by every instance: a team's requests and tokens a
 * day, and a provider key's `rpd` (each with its own `usageKey`). Requests are reserved in KV in
 * small chunks before they are sent (compare-and-set, never past the
 * budget), so an instance spends from memory and requests never overshoot;
 * a chunk left unused for 2 s goes back. Tokens are added from answers
 * every `flushMs` and read back with each reservation and each flush: a
 * tokens budget is overshot by at most the answers admitted on that stale
 * view (one chunk per instance) plus those already in flight.
 */
export class DayBudgets {
  #days = new Map<string, DayState>();
  #kv: KvCas;
  #clock: Clock;
  #dayStartMs: number;
  #peers: () => number;
  #flushMs: number;
  #call: KvCallOptions;
  #usageKey: (name: string, day: string, what: "requests" | "tokens") => Deno.KvKey;
  #timer: TimerHandle | undefined;
  #closed = false;

  constructor(options: DayBudgetsOptions) {
    this.#kv = options.kv;
    this.#clock = options.clock;
    this.#dayStartMs = options.dayStartMs ?? 0;
    this.#peers = options.peers ?? (() => 1);
    this.#flushMs = options.flushMs ?? 1000;
    this.#call = options.call ?? {};
    this.#usageKey = options.usageKey;
    if (!(this.#flushMs > 0)) throw new RangeError(`flushMs must be > 0 (got ${this.#flushMs})`);
  }

  /** Whether `team` is known to be past its budget (no KV call). */
  check(team: Budgeted, now: number): BudgetVerdict {
    const s = this.#state(team.name, now);
    return exhausted(team.daily, s, now) ?? OK;
  }

  /**
   * Whether {@linkcode DayBudgets.spend} would succeed at once, from
   * memory: the budget has a reservation left here (or there is no budget).
   */
  ready(team: Budgeted, now: number): boolean {
    const daily = team.daily;
    if (daily.requests === undefined && daily.tokens === undefined) return true;
    const s = this.#state(team.name, now);
    return s.allowance > 0 && exhausted(daily, s, now) === undefined;
  }

  /**
   * Counts one request going upstream. Synchronous while the instance holds
   * a reservation (or the team has no budget); a promise when it must reserve.
   */
  spend(team: Budgeted, now: number): BudgetVerdict | Promise<BudgetVerdict> {
    const s = this.#state(team.name, now);
    s.lastUse = now;
    s.demand.count(1, now);
    const daily = team.daily;
    if (daily.requests === undefined && daily.tokens === undefined) {
      s.pendingRequests++;
      this.#wake();
      return OK;
    }
    const over = exhausted(daily, s, now);
    // Spent as last read; but other instances hand back what they reserved
    // and left idle, so once a flushMs the reservation reads the day again.
    if (over && (tokensOver(daily, s) || now - s.readAt < this.#flushMs)) return over;
    if (s.allowance > 0) {
      s.allowance--;
      return OK;
    }
    s.reserving ??= this.#reserve(team, s).finally(() => s.reserving = undefined);
    return s.reserving.then((v) => v.ok ? this.spend(team, this.#clock.now()) : v);
  }

  /** Adds the tokens of an answer to the team's day. */
  addTokens(teamName: string, tokens: number): void {
    if (!(tokens > 0)) return;
    this.#state(teamName, this.#clock.now()).pendingTokens += tokens;
    this.#wake();
  }

  /** The team's counts today: KV's plus what this instance has not yet written. */
  async usage(teamName: string): Promise<{ day: string; requests: number; tokens: number }> {
    const { day } = budgetDay(this.#clock.now(), this.#dayStartMs);
    const [r, t] = await this.#readDay(teamName, day);
    const s = this.#days.get(teamName);
    const mine = s?.day === day ? s : undefined;
    return {
      day,
      requests: u64(r) + (mine?.pendingRequests ?? 0) - (mine?.allowance ?? 0),
      tokens: u64(t) + (mine?.pendingTokens ?? 0),
    };
  }

  /** Writes every pending count and hands back every reservation; stops the timer. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush(true);
  }

  /** Writes pending counts, reads the day's counts back, and hands back idle reservations. */
  async flush(all = false): Promise<void> {
    const now = this.#clock.now();
    await Promise.allSettled([...this.#days].map(async ([name, s]) => {
      const giveBack = all || now - s.lastUse >= IDLE_RETURN_MS ? s.allowance : 0;
      if (s.pendingRequests === 0 && s.pendingTokens === 0 && giveBack === 0) return;
      const requests = s.pendingRequests, tokens = s.pendingTokens;
      s.pendingRequests = s.pendingTokens = 0;
      s.allowance -= giveBack;
      try {
        await this.#add(name, s.day, requests - giveBack, tokens);
        const [r, t] = await this.#readDay(name, s.day);
        s.requestsSeen = u64(r);
        s.tokensSeen = u64(t);
        s.readAt = now;
      } catch {
        // KV is down: keep the counts for the next flush.
        s.pendingRequests += requests;
        s.pendingTokens += tokens;
        s.allowance += giveBack;
      }
    }));
  }

  /** Adds `requests` (may be negative: a hand-back) and `tokens` to the day's counts. */
  async #add(name: string, day: string, requests: number, tokens: number): Promise<void> {
    const rKey = this.#usageKey(name, day, "requests");
    if (requests < 0) {
      // KvU64 sums cannot go down: a hand-back is a compare-and-set.
      const back = requests;
      await casUpdate<Deno.KvU64, void>(this.#kv, rKey, (cur) => ({
        write: new Deno.KvU64(BigInt(Math.max(0, (cur === null ? 0 : Number(cur.value)) + back))),
        result: undefined,
      }), { call: this.#call });
      requests = 0;
    }
    if (requests === 0 && tokens === 0) return;
    const op = this.#kv.atomic();
    if (requests > 0) op.sum(rKey, BigInt(requests));
    if (tokens > 0) op.sum(this.#usageKey(name, day, "tokens"), BigInt(Math.round(tokens)));
    await kvCall(() => op.commit(), this.#call);
  }

  /** The day's two counts, read in one snapshot. */
  #readDay(name: string, day: string) {
    return kvCall(
      () =>
        this.#kv.getMany<[Deno.KvU64, Deno.KvU64]>([
          this.#usageKey(name, day, "requests"),
          this.#usageKey(name, day, "tokens"),
        ]),
      this.#call,
    );
  }

  /**
   * Reserves a chunk of the day's requests (see `#chunk`), never past the
   * budget: a compare-and-set on the requests count, with the tokens count
   * read in the same snapshot.
   */
  async #reserve(team: Budgeted, s: DayState): Promise<BudgetVerdict> {
    const peers = Math.max(1, this.#peers());
    try {
      // The update gives the chunk reserved, or the refusal when nothing can be.
      const update = await casUpdate<Deno.KvU64, number | BudgetVerdict>(
        this.#kv,
        this.#usageKey(team.name, s.day, "requests"),
        (requests, [tokens]) => {
          s.requestsSeen = requests === null ? 0 : Number(requests.value);
          s.tokensSeen = u64(tokens as Deno.KvEntryMaybe<Deno.KvU64>);
          const now = this.#clock.now();
          s.readAt = now;
          const over = exhausted(team.daily, s, now);
          if (over) return { done: over };
          const chunk = chunkSize(team.daily, s, peers, now);
          if (chunk === 0) return { done: refusal(s, now) };
          return { write: new Deno.KvU64(BigInt(s.requestsSeen + chunk)), result: chunk };
        },
        { call: this.#call, alsoRead: [this.#usageKey(team.name, s.day, "tokens")] },
      );
      if (!update.ok) return { ok: false, retryAfterMs: 1000, resetsAt: s.resetsAt };
      const chunk = update.result;
      if (typeof chunk !== "number") return chunk;
      s.requestsSeen += chunk;
      s.allowance += chunk;
      return OK;
    } catch {
      // KV is down: this instance's share of what was left when KV last
      // answered, counted to be written on return.
      const left = (team.daily.requests ?? Infinity) - s.requestsSeen;
      if (left <= 0 || s.pendingRequests * peers >= left) {
        return refusal(s, this.#clock.now());
      }
      // Held as an allowance of one that is not in KV: the request is summed on the next flush.
      s.pendingRequests++;
      s.allowance++;
      this.#wake();
      return OK;
    }
  }

  /** The team's state for the budget day holding `now` (a new day starts from zero). */
  #state(name: string, now: number): DayState {
    let s = this.#days.get(name);
    if (s === undefined || now >= s.resetsAt) {
      const { day, resetsAt } = budgetDay(now, this.#dayStartMs);
      if (s !== undefined && (s.pendingRequests > 0 || s.pendingTokens > 0)) {
        // Yesterday's last counts still go to yesterday.
        this.#add(name, s.day, s.pendingRequests, s.pendingTokens).catch(() => {});
      }
      s = newDayState(day, resetsAt, now);
      this.#days.set(name, s);
    }
    return s;
  }

  #wake(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.flush().finally(() => {
        const busy = [...this.#days.values()].some((s) =>
          s.pendingRequests > 0 || s.pendingTokens > 0 || s.allowance > 0
        );
        if (busy) this.#wake();
      });
    }, this.#flushMs);
  }
}
