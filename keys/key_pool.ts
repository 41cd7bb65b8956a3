import { defaultCooldownMs, type Outcome } from "../providers/classify.ts";
import type { KeyHealth, KeyHealthStore } from "./health_store.ts";
import { HealthWriter } from "./health_writer.ts";
import { type Clock, systemClock, WakeList } from "../limiter/mod.ts";

/** A provider key with its loggable id. The key itself never leaves the process but upstream. */
export interface PooledKey {
  readonly id: string;
  readonly secret: string;
}

/**
 * The result of picking: a key; or, when every key rests, the time the
 * earliest returns; or, when no key has room, the key to wait for (`waitOn`).
 */
export type Pick =
  | { ok: true; key: PooledKey }
  | { ok: false; untilMs: number; waitOn?: PooledKey };

/** Tells whether a key has room for a request costing `cost` model tokens, taking its turn if so. */
export interface KeyRoom {
  room(key: PooledKey, now: number, cost: number): boolean;
}

/** Options for {@linkcode KeyPool}. */
export interface KeyPoolOptions {
  store: KeyHealthStore;
  /** How long a key rejected by 401/403/quota rests, in ms. Default 3600000. */
  keyDisableMs?: number;
  /** Told of each rest (no key material, only the id). */
  log?: (event: string, detail: Record<string, unknown>) => void;
  /** The next reset of the provider's day after a time: a key at its daily cap rests until it. Default: the next UTC midnight. */
  dayResetAfter?: (now: number) => number;
  /**
   * Asks the provider about a suspect key with a request that carries
   * nothing of any client (see `gateway/key_probe.ts`): what its answer
   * means for the key. Without it, a suspect key only rests `checkMs`.
   */
  probe?: (key: PooledKey) => Promise<Outcome | undefined>;
  /** The time of a probe's verdict, and of waits for a key's return. Default: the system clock. */
  clock?: Clock;
  /** How long a suspect key rests while its probe runs (and when the probe tells nothing), in ms. Default 30000. */
  checkMs?: number;
}

/**
 * Key faults (`quota`) one team's requests may cause in a row, with no
 * success of theirs between, before its further ones rest nothing: then
 * the team's requests, not the keys, are the suspects.
 */
const TEAM_FAULTS_IN_A_ROW = 2;

/**
 * The keys of one service in round-robin order, skipping those that rest.
 * Health is read from KV by {@linkcode KeyPool.refresh} and written on every
 * 429, 401 or quota error, so every instance skips the same keys.
 */
export class KeyPool {
  readonly service: string;
  readonly keys: readonly PooledKey[];
  #health = new Map<string, KeyHealth>();
  #next = 0;
  #store: KeyHealthStore;
  #disableMs: number;
  #dayResetAfter: (now: number) => number;
  #log: KeyPoolOptions["log"];
  /** The rests on their way to KV, and those to write again once it answers. */
  #writer: HealthWriter;
  #probe: KeyPoolOptions["probe"];
  #checkMs: number;
  #clock: Clock;
  /** Requests waiting while every key rests: woken when one may be back. */
  #returns: WakeList;
  /** Keys whose probe is out. */
  #probing = new Set<string>();
  /** Key faults in a row per team (reset by the team's next success). */
  #teamFaults = new Map<string, number>();

  constructor(service: string, keys: readonly PooledKey[], options: KeyPoolOptions) {
    this.service = service;
    this.keys = keys;
    this.#store = options.store;
    this.#writer = new HealthWriter(options.store, service, options.log);
    this.#disableMs = options.keyDisableMs ?? 3_600_000;
    this.#log = options.log;
    this.#probe = options.probe;
    this.#checkMs = options.checkMs ?? 30_000;
    this.#clock = options.clock ?? systemClock;
    this.#returns = new WakeList(this.#clock);
    this.#dayResetAfter = options.dayResetAfter ??
      ((now) => Math.floor(now / 86_400_000) * 86_400_000 + 86_400_000);
  }

  /** Reads the shared health records; local rests not yet in KV are kept (one gone from KV ended). */
  async refresh(): Promise<void> {
    const shared = await this.#store.list(this.service);
    for (const [id, local] of this.#health) {
      const remote = shared.get(id);
      // A later decision (an admin's enable) wins; else the longer rest.
      const newer = remote?.setAt !== undefined && remote.setAt > (local.setAt ?? -Infinity);
      const kept = remote ? remote.until < local.until && !newer : this.#writer.holds(id);
      if (kept) shared.set(id, local);
    }
    this.#health = shared;
    // Another instance's word may have ended a rest (an admin's enable, a success).
    this.#returns.wake();
  }

  /** Waits until `untilMs` (the earliest rest's end), or until a key may be back; false on abort. */
  waitForReturn(untilMs: number, signal?: AbortSignal): Promise<boolean> {
    return this.#returns.wait(untilMs, signal);
  }

  /** The health record of a key, if it has one. */
  health(id: string): KeyHealth | undefined {
    return this.#health.get(id);
  }

  /**
   * The next key in rotation that is not resting, preferring keys not in
   * `tried` (a retry goes to another key when there is one). With `quota`,
   * a key is taken only when `quota.room` takes its turn; when none has
   * room, the first without is `waitOn` (the rotation moves past it, so
   * that waiting requests spread over the keys).
   */
  pick(now: number, tried?: ReadonlySet<string>, quota?: KeyRoom, cost = 0): Pick {
    const n = this.keys.length;
    let fallback = -1;
    let waitOn = -1;
    let earliest = Infinity;
    for (let i = 0; i < n; i++) {
      const idx = (this.#next + i) % n;
      const key = this.keys[idx];
      const h = this.#health.get(key.id);
      if (h && h.until > now) {
        earliest = Math.min(earliest, h.until);
        continue;
      }
      if (tried?.has(key.id)) {
        if (fallback < 0) fallback = idx;
        continue;
      }
      if (quota !== undefined && !quota.room(key, now, cost)) {
        if (waitOn < 0) waitOn = idx;
        continue;
      }
      this.#next = idx + 1;
      return { ok: true, key };
    }
    if (fallback >= 0 && (quota === undefined || quota.room(this.keys[fallback], now, cost))) {
      this.#next = fallback + 1;
      return { ok: true, key: this.keys[fallback] };
    }
    if (waitOn < 0) waitOn = fallback;
    if (waitOn >= 0) {
      this.#next = waitOn + 1;
      return { ok: false, untilMs: now, waitOn: this.keys[waitOn] };
    }
    return { ok: false, untilMs: earliest };
  }

  /**
   * Takes a key out of rotation until `until` for a reason other than an
   * answer's status (its quota is spent; the provider's headers say 0 left).
   */
  rest(key: PooledKey, until: number, reason: string, now: number): void {
    const old = this.#health.get(key.id);
    if (old && old.until >= until) return;
    // A spent day is a disable until the reset (the status says so); a minute's count, a cool-down.
    const state = reason === "daily_quota" ? "disabled" : "cooling";
    this.#put(key, { state, until, strikes: old?.strikes ?? 0, reason }, now);
  }

  /**
   * An admin ends a key's rest (cool-down or disable) everywhere: written to
   * KV as a decision newer than the rest, so every instance drops the rest
   * at its next refresh (within a second). Resolves once written.
   */
  async enable(keyIdToEnable: string, now: number): Promise<boolean> {
    if (!this.keys.some((k) => k.id === keyIdToEnable)) return false;
    const record = await this.#store.enable(this.service, keyIdToEnable, now);
    this.#health.set(keyIdToEnable, record);
    this.#returns.wake();
    return true;
  }

  /**
   * Records what an attempt with `key` taught about it. `team` names whose
   * request it was: a team whose requests turn keys bad in a row is
   * suspected instead of the keys (see {@linkcode TEAM_FAULTS_IN_A_ROW}).
   * `sentAt` is when the attempt was sent (default `now`): a success ends
   * a key's record only if it was sent after the rest had run out.
   */
  report(key: PooledKey, outcome: Outcome, now: number, team?: string, sentAt = now): void {
    const old = this.#health.get(key.id);
    let rest: KeyHealth | undefined;
    if (outcome.kind === "rate_limited" && outcome.daily) {
      const until = this.#dayResetAfter(now);
      rest = { state: "disabled", until, strikes: old?.strikes ?? 0, reason: "daily_quota" };
    } else if (outcome.kind === "rate_limited") {
      const strikes = (old?.state === "cooling" ? old.strikes : 0) + 1;
      const ms = outcome.retryAfterMs ?? defaultCooldownMs(strikes);
      rest = { state: "cooling", until: now + ms, strikes, reason: "rate_limited" };
    } else if (outcome.kind === "key_suspect") {
      if (this.#probing.has(key.id)) return;
      rest = { state: "cooling", until: now + this.#checkMs, strikes: 0, reason: "checking" };
      this.#check(key, outcome.reason);
    } else if (outcome.kind === "key_rejected") {
      if (team !== undefined && this.#teamFault(team, key)) return;
      rest = this.#disable(outcome.reason, now);
    } else if (outcome.kind === "success") {
      if (team !== undefined && this.#teamFaults.size > 0) this.#teamFaults.delete(team);
      // Only a request sent once the rest was over ends the record (its 429
      // streak). One sent before the rest was known — here, or by an instance
      // whose view was a moment old — says nothing of the key since: ending
      // the rest for it would hand the key back to every instance.
      if (!old || sentAt < old.until) return;
      this.#health.delete(key.id);
      this.#write(key.id, null, now);
      this.#returns.wake();
      return;
    }
    if (!rest) return;
    if (old && old.until > rest.until) rest = { ...rest, until: old.until };
    this.#put(key, rest, now);
  }

  /** Whether `team` has turned too many keys bad in a row to be believed (counts this one). */
  #teamFault(team: string, key: PooledKey): boolean {
    const n = (this.#teamFaults.get(team) ?? 0) + 1;
    this.#teamFaults.set(team, n);
    if (n <= TEAM_FAULTS_IN_A_ROW) return false;
    this.#log?.("key_fault_suspect_team", { service: this.service, key: key.id, team, inARow: n });
    return true;
  }

  #disable(reason: string, now: number): KeyHealth {
    return { state: "disabled", until: now + this.#disableMs, strikes: 0, reason };
  }

  /**
   * Probes a suspect key: the provider refusing it again disables it for
   * `keyDisableMs`; accepting it ends its rest at once; anything else (no
   * answer, a 429, a 5xx) leaves the short rest to run out.
   */
  #check(key: PooledKey, reason: "unauthorized" | "forbidden"): void {
    if (this.#probe === undefined) return;
    this.#probing.add(key.id);
    this.#writer.track(
      this.#probe(key).then((verdict) => {
        const now = this.#clock.now();
        const rest = this.#health.get(key.id);
        if (verdict?.kind === "success") {
          if (rest?.reason === "checking") {
            this.#health.delete(key.id);
            this.#write(key.id, null, now);
            this.#returns.wake();
          }
        } else if (verdict?.kind === "key_suspect" || verdict?.kind === "key_rejected") {
          const why = verdict.kind === "key_rejected" ? verdict.reason : reason;
          this.#put(key, this.#disable(why, now), now);
        }
        this.#log?.("key_probed", {
          service: this.service,
          key: key.id,
          verdict: verdict?.kind ?? "no_answer",
        });
      }).finally(() => this.#probing.delete(key.id)),
    );
  }

  #put(key: PooledKey, rest: KeyHealth, now: number): void {
    rest = { ...rest, setAt: now };
    this.#health.set(key.id, rest);
    this.#log?.("key_rest", {
      service: this.service,
      key: key.id,
      state: rest.state,
      reason: rest.reason,
      ms: rest.until - now,
    });
    this.#write(key.id, rest, now);
  }

  /** Writes the rests that could not be written while KV was down (see HealthWriter). */
  writeBack(now: number): void {
    this.#writer.writeBack(now);
  }

  /** Resolves when every health write so far has reached KV (or failed). */
  settled(): Promise<void> {
    return this.#writer.settled();
  }

  #write(id: string, health: KeyHealth | null, now: number): void {
    this.#writer.write(id, health, now);
  }
}
