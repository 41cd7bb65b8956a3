/**
 * The pure part of {@linkcode DayBudgets}: one day's counts as an instance
 * knows them, how many requests it reserves at once, and when the day is
 * spent. No KV, no clock: each takes what it needs.
 *
 * @module
 */
import { DemandMeter } from "./lease_policy.ts";

/** A budget per day; either count may be absent (no cap). */
export interface DailyBudget {
  requests?: number;
  tokens?: number;
}

/** Whose day is counted: a team, or a provider key (its budget: `rpd`). */
export interface Budgeted {
  name: string;
  daily: DailyBudget;
}

/** A name's counts on one day. */
export interface DayUsage {
  day: string;
  requests: number;
  tokens: number;
}

/** A day's requests and tokens as KV holds them. */
export type DayEntries = [Deno.KvEntryMaybe<Deno.KvU64>, Deno.KvEntryMaybe<Deno.KvU64>];

/** May a team's request go upstream? If not, until when the budget is spent. */
export type BudgetVerdict = { ok: true } | { ok: false; retryAfterMs: number; resetsAt: number };

/** A reservation unused for this long goes back, so that other instances may spend it. */
export const IDLE_RETURN_MS = 2000;

/** Most requests one instance reserves at once: 20, or a second of the team's recent rate. */
const MIN_CHUNK_CAP = 20;
const MAX_CHUNK_CAP = 5000;

/** One name's day (a team's, a key's) as this instance knows it. */
export interface DayState {
  day: string;
  resetsAt: number;
  /** Requests reserved in KV and not yet sent. */
  allowance: number;
  /** The day's counts as last read from KV. */
  requestsSeen: number;
  tokensSeen: number;
  /** Whether a budget applies (its counts are read back at each flush). */
  budgeted: boolean;
  /** When they were read (a spent day may come back: others hand back reservations). */
  readAt: number;
  /** The read from which the requests count has been at the budget (Infinity: it is not). */
  fullSince: number;
  /** Counted here, not yet added in KV. */
  pendingRequests: number;
  pendingTokens: number;
  lastUse: number;
  reserving: Promise<BudgetVerdict> | undefined;
  /** Requests sent per second lately: a busy team reserves bigger chunks. */
  demand: DemandMeter;
}

/** A day counted from zero. */
export function newDayState(day: string, resetsAt: number, now: number): DayState {
  return {
    day,
    resetsAt,
    allowance: 0,
    requestsSeen: 0,
    tokensSeen: 0,
    budgeted: false,
    readAt: -Infinity,
    fullSince: Infinity,
    pendingRequests: 0,
    pendingTokens: 0,
    lastUse: now,
    reserving: undefined,
    demand: new DemandMeter(),
  };
}

/**
 * Requests to reserve at once: 20, or a second of the team's recent rate
 * when more (at most 5000); never more than a quarter of what is left per
 * instance, and for a tokens budget sized from the tokens per request so far.
 */
export function chunkSize(daily: DailyBudget, s: DayState, peers: number, now: number): number {
  let chunk = Math.min(MAX_CHUNK_CAP, Math.max(MIN_CHUNK_CAP, Math.ceil(s.demand.rate(now))));
  if (daily.requests !== undefined) {
    const left = daily.requests - s.requestsSeen;
    if (left <= 0) return 0;
    chunk = Math.min(chunk, left, Math.ceil(left / (4 * peers)));
  }
  if (daily.tokens !== undefined) {
    const left = daily.tokens - s.tokensSeen;
    const perRequest = s.requestsSeen > 0 ? Math.max(1, s.tokensSeen / s.requestsSeen) : 1000;
    chunk = Math.min(chunk, Math.max(1, Math.floor(left / perRequest / (4 * peers))));
  }
  return Math.max(1, chunk);
}

/**
 * The step of a reservation's compare-and-set, given the day's counts as KV
 * has them: the chunk to add to the requests count, or the refusal when
 * nothing can be reserved. Notes the counts on `s`.
 */
export function reserveStep(
  daily: DailyBudget,
  s: DayState,
  peers: number,
  now: number,
  requests: number,
  tokens: number,
): { done: BudgetVerdict } | { write: Deno.KvU64; result: number } {
  s.requestsSeen = requests;
  s.tokensSeen = tokens;
  s.readAt = now;
  const over = exhausted(daily, s, now);
  if (over) return { done: over };
  const chunk = chunkSize(daily, s, peers, now);
  if (chunk === 0) return { done: refusal(s, now) };
  return { write: new Deno.KvU64(BigInt(requests + chunk)), result: chunk };
}

/**
 * A request while KV does not answer: this instance's share of what was
 * left when KV last answered, held as an allowance of one that is not in
 * KV, its request summed at the next flush.
 */
export function offlineSpend(
  daily: DailyBudget,
  s: DayState,
  peers: number,
  now: number,
): BudgetVerdict {
  const left = (daily.requests ?? Infinity) - s.requestsSeen;
  if (left <= 0 || s.pendingRequests * peers >= left) return refusal(s, now);
  s.pendingRequests++;
  s.allowance++;
  return { ok: true };
}

/** Whether the day's tokens are spent (those counted here included). */
export function tokensOver(daily: DailyBudget, s: DayState): boolean {
  return daily.tokens !== undefined && s.tokensSeen + s.pendingTokens >= daily.tokens;
}

/** The refusal when the day is spent, else undefined. */
export function exhausted(daily: DailyBudget, s: DayState, now: number): BudgetVerdict | undefined {
  const spent = tokensOver(daily, s);
  const requestsOver = daily.requests !== undefined && s.allowance === 0 &&
    s.requestsSeen >= daily.requests;
  return spent || requestsOver ? refusal(s, now) : undefined;
}

/**
 * A refusal of a day whose requests were seen spent, made to look again soon
 * while the day may still gain room: other instances hand back what they
 * reserved and left idle ({@linkcode IDLE_RETURN_MS} after their last use, at
 * their next flush), seen here at the next read. From the first read that
 * showed the day full, for `settleMs` (0 with no other instance), the refusal
 * says to come back then, not at the reset. A spent tokens budget is final.
 * Notes on `s` the read from which the day has been full; a read that shows
 * room clears it, so a day that fills again gets its own few seconds. `v`
 * undefined (no refusal): only that; undefined again.
 */
export function settle(
  v: BudgetVerdict | undefined,
  daily: DailyBudget,
  s: DayState,
  now: number,
  settleMs: number,
): BudgetVerdict | undefined {
  const full = daily.requests !== undefined && s.requestsSeen >= daily.requests;
  if (!full) s.fullSince = Infinity;
  if (v === undefined || v.ok) return undefined;
  if (!full || tokensOver(daily, s)) return v;
  s.fullSince = Math.min(s.fullSince, s.readAt);
  const until = s.fullSince + settleMs;
  return until > now ? { ok: false, retryAfterMs: until - now, resetsAt: v.resetsAt } : v;
}

/** A refusal until the day resets (at least a second). */
export function refusal(s: DayState, now: number): BudgetVerdict {
  return { ok: false, retryAfterMs: Math.max(1000, s.resetsAt - now), resetsAt: s.resetsAt };
}

/** One name's counts on their way to KV in a flush. */
export interface Flushing {
  name: string;
  s: DayState;
  requests: number;
  tokens: number;
  /** Reserved requests handed back (idle, or at the end). */
  giveBack: number;
}

/** Takes a state's counts (and `giveBack` of its reservation) into a flush's batch. */
export function take(batch: Flushing[], name: string, s: DayState, giveBack: number): void {
  if (s.pendingRequests === 0 && s.pendingTokens === 0 && giveBack === 0) return;
  batch.push({
    name,
    s,
    requests: s.pendingRequests,
    tokens: s.pendingTokens,
    giveBack,
  });
  s.pendingRequests = s.pendingTokens = 0;
  s.allowance -= giveBack;
}

/** The counts taken for a flush go back to the state, to be written at the next one. */
export function keep(f: Flushing): void {
  f.s.pendingRequests += f.requests;
  f.s.pendingTokens += f.tokens;
  f.s.allowance += f.giveBack;
}
