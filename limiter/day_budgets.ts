import type { Clock, TimerHandle } from "../lib/mod.ts";
import { type KvCallOptions, type KvCas, type SumSource, u64 } from "../kv/mod.ts";
import { budgetDay } from "./day.ts";
import {
  type Budgeted,
  type BudgetVerdict,
  type DailyBudget,
  type DayState,
  type DayUsage,
  exhausted,
  type Flushing,
  IDLE_RETURN_MS,
  keep,
  newDayState,
  offlineSpend,
  reserveStep,
  settle,
  take,
  tokensOver,
} from "./day_policy.ts";
import { DayStore, type UsageKey } from "./day_store.ts";

export type { Budgeted, BudgetVerdict, DailyBudget, DayUsage };

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
  /**
   * False: the counts go into another's commit through
   * {@linkcode DayBudgets.sumInto} (a service's keys without `rpd` go in the
   * minute counts'), and no flush timer runs for them; a name spent against a
   * budget still starts it (its reservation must be read back and go back
   * when idle). Default true.
   */
  timer?: boolean;
  call?: KvCallOptions;
  /** Where a day's counts are kept (`teamUsageKey` for teams, `keyDayUsageKey` for keys). */
  usageKey: UsageKey;
}

const OK: BudgetVerdict = Object.freeze({ ok: true });

/**
 * The one day counter: each team's and each provider key's requests and
 * tokens a day (each with its own `usageKey`), summed by every instance in
 * one commit a flush; and their budgets (a team's, a key's `rpd`) where
 * there is one. Budgeted requests are reserved in KV in small chunks before
 * they are sent (compare-and-set, never past the budget), so an instance
 * spends from memory and requests never overshoot; a chunk left unused for
 * 2 s goes back. Tokens are added from answers every `flushMs` and read
 * back with each reservation and each flush: a tokens budget is overshot by
 * at most the answers admitted on that stale view (one chunk per instance)
 * plus those already in flight.
 */
export class DayBudgets implements SumSource {
  #days = new Map<string, DayState>();
  /** Days that ended with counts (or a reservation) not yet written. */
  #ended: [string, DayState][] = [];
  #store: DayStore;
  #clock: Clock;
  #dayStartMs: number;
  #peers: () => number;
  #flushMs: number;
  /** Whether a timer of its own flushes the counts (see `DayBudgetsOptions.timer`). */
  readonly timed: boolean;
  #timer: TimerHandle | undefined;
  #closed = false;

  constructor(options: DayBudgetsOptions) {
    this.#store = new DayStore(options.kv, options.usageKey, options.call ?? {});
    this.#clock = options.clock;
    this.#dayStartMs = options.dayStartMs ?? 0;
    this.#peers = options.peers ?? (() => 1);
    this.#flushMs = options.flushMs ?? 1000;
    this.timed = options.timer ?? true;
    if (!(this.#flushMs > 0)) throw new RangeError(`flushMs must be > 0 (got ${this.#flushMs})`);
  }

  /**
   * Whether `team` is known to be past its budget (no KV call): as
   * {@linkcode DayBudgets.spend} would say from memory, so a requests count
   * read over `flushMs` ago is no refusal here (spend reads it again).
   */
  check(team: Budgeted, now: number): BudgetVerdict {
    return this.#refusal(team, this.#state(team.name, now), now) ?? OK;
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
    const daily = team.daily;
    if (daily.requests === undefined && daily.tokens === undefined) {
      this.count(team.name, now);
      return OK;
    }
    const s = this.#state(team.name, now);
    s.budgeted = true;
    s.lastUse = now;
    // The flushes read the day back and hand an idle reservation back: no answer need wake them.
    this.#wake(true);
    s.demand.count(1, now);
    const over = this.#refusal(team, s, now);
    if (over) return over;
    if (s.allowance > 0) {
      s.allowance--;
      return OK;
    }
    s.reserving ??= this.#reserve(team, s).finally(() => s.reserving = undefined);
    return s.reserving.then((v) =>
      v.ok ? this.spend(team, this.#clock.now()) : this.#refusal(team, s, this.#clock.now(), v) ?? v
    );
  }

  /**
   * The refusal of a day spent as last read (`v`: from memory), made to look
   * again soon by {@linkcode settle}; none when only its requests are spent
   * and that read is `flushMs` old: other instances hand back what they
   * reserved and left idle, so spend() reads it again.
   */
  #refusal(team: Budgeted, s: DayState, now: number, v = exhausted(team.daily, s, now)) {
    const refused = v !== undefined && !v.ok;
    if (refused && now - s.readAt >= this.#flushMs && !tokensOver(team.daily, s)) return undefined;
    const settleMs = refused && this.#peers() > 1 ? IDLE_RETURN_MS + 2 * this.#flushMs : 0;
    return settle(v, team.daily, s, now, settleMs);
  }

  /** Counts one request of a name with no budget (a key without `rpd`), for the next flush. */
  count(name: string, now: number): void {
    const s = this.#state(name, now);
    s.lastUse = now;
    s.pendingRequests++;
    this.#wake();
  }

  /** Adds the tokens of an answer to a name's day (a team's, a key's). */
  addTokens(name: string, tokens: number): void {
    if (!(tokens > 0)) return;
    this.#state(name, this.#clock.now()).pendingTokens += tokens;
    this.#wake();
  }

  /** A name's counts on `day` (default: today): KV's plus what this instance has not written. */
  async usage(name: string, day?: string): Promise<DayUsage> {
    return (await this.usageOf([name], day))[0];
  }

  /** {@linkcode DayBudgets.usage} of several names, five to a KV read (the status's keys). */
  async usageOf(
    names: readonly string[],
    day = budgetDay(this.#clock.now(), this.#dayStartMs).day,
  ): Promise<DayUsage[]> {
    // Only shown (the status, the admin API): an eventual read, near the instance.
    const counts = await this.#store.read(names, day, "eventual");
    return names.map((name, j) => {
      const s = this.#days.get(name);
      const mine = s?.day === day ? s : undefined;
      return {
        day,
        requests: u64(counts[j][0]) + (mine?.pendingRequests ?? 0) - (mine?.allowance ?? 0),
        tokens: u64(counts[j][1]) + (mine?.pendingTokens ?? 0),
      };
    });
  }

  /** Writes every pending count and hands back every reservation; stops the timer. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush(true);
  }

  /**
   * Writes every pending count in one commit, reads the budgeted days back,
   * and hands back idle reservations. A count KV refuses is kept for the
   * next flush.
   */
  async flush(all = false): Promise<void> {
    const now = this.#clock.now();
    const { batch, ended } = this.#take(all, now);
    const written = await this.#store.commit(await this.#store.handBack(batch));
    this.#keepEnded(ended);
    await this.#store.readBack(written.filter((f) => f.s.budgeted), now);
  }

  /**
   * Puts every pending count into `op`, another's commit (see
   * `DayBudgetsOptions.timer`); the function returned is told whether it
   * went through, and keeps the counts for the next one if not.
   */
  sumInto(op: Deno.AtomicOperation): ((written: boolean) => void) | undefined {
    const { batch, ended } = this.#take(false, this.#clock.now());
    if (batch.length === 0) return void this.#keepEnded(ended);
    for (const f of batch) this.#store.sum(op, f);
    return (written) => {
      if (!written) batch.forEach(keep);
      this.#keepEnded(ended);
    };
  }

  /** Takes the pending counts (and idle reservations, or all with `all`) for a flush. */
  #take(all: boolean, now: number): { batch: Flushing[]; ended: [string, DayState][] } {
    const ended = this.#ended;
    this.#ended = [];
    const batch: Flushing[] = [];
    for (const [name, s] of ended) take(batch, name, s, s.allowance);
    for (const [name, s] of this.#days) {
      take(batch, name, s, all || now - s.lastUse >= IDLE_RETURN_MS ? s.allowance : 0);
    }
    return { batch, ended };
  }

  /** An ended day whose counts KV refused waits for the next flush. */
  #keepEnded(ended: [string, DayState][]): void {
    this.#ended.push(...ended.filter(([, e]) => e.pendingRequests > 0 || e.pendingTokens > 0));
  }

  /**
   * Reserves a chunk of the day's requests (see `reserveStep`), never past
   * the budget: a compare-and-set on the requests count, with the tokens
   * count read in the same snapshot.
   */
  async #reserve(team: Budgeted, s: DayState): Promise<BudgetVerdict> {
    const peers = Math.max(1, this.#peers());
    try {
      // The update gives the chunk reserved, or the refusal when nothing can be.
      const update = await this.#store.reserve<number | BudgetVerdict>(
        team.name,
        s.day,
        (requests, tokens) =>
          reserveStep(team.daily, s, peers, this.#clock.now(), requests, tokens),
      );
      if (!update.ok) return { ok: false, retryAfterMs: 1000, resetsAt: s.resetsAt };
      const chunk = update.result;
      if (typeof chunk !== "number") return chunk;
      s.requestsSeen += chunk;
      s.allowance += chunk;
      return OK;
    } catch {
      const verdict = offlineSpend(team.daily, s, peers, this.#clock.now());
      if (verdict.ok) this.#wake();
      return verdict;
    }
  }

  /** The team's state for the budget day holding `now` (a new day starts from zero). */
  #state(name: string, now: number): DayState {
    let s = this.#days.get(name);
    if (s === undefined || now >= s.resetsAt) {
      const { day, resetsAt } = budgetDay(now, this.#dayStartMs);
      // Yesterday's last counts still go to yesterday, at the next flush.
      if (s !== undefined) this.#ended.push([name, s]);
      s = newDayState(day, resetsAt, now);
      this.#days.set(name, s);
    }
    return s;
  }

  /** Flushes in `flushMs` (a timer of its own, unless `timed` is false and no budget asks for one). */
  #wake(budgeted = false): void {
    if (this.#timer !== undefined || this.#closed || !(this.timed || budgeted)) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.flush().finally(() => {
        const days = [...this.#days.values()];
        const held = days.some((s) => s.allowance > 0);
        const pending = this.#ended.length > 0 ||
          days.some((s) => s.pendingRequests > 0 || s.pendingTokens > 0);
        if (held || pending) this.#wake(held);
      });
    }, this.#flushMs);
  }
}
