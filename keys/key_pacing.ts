import type {
  CapacityStore,
  Clock,
  DayBudgets,
  ScopeLimiter,
  ServiceLimits,
  WaitOptions,
} from "../limiter/mod.ts";
import type { PooledKey } from "./key_pool.ts";
import { type KeyQuota, perMinuteLimits } from "./key_quota.ts";
import type { KeyRate, KeyRateStore } from "./key_rate_store.ts";
import {
  carriesRateHeaders,
  type RateLimitDialect,
  readRateHeaders,
} from "../providers/rate_headers.ts";
import { TokenMeter } from "./token_meter.ts";
import { lastingPerMinute, minOf, near, perMinute } from "./pace_figures.ts";

/** May a request go with a key; if not, after how long it might (never: `tooLarge`). */
export type KeyTurn = { ok: true } | { ok: false; retryAfterMs: number; tooLarge?: boolean };

/** Options for {@linkcode KeyPacing}. */
export interface KeyPacingOptions {
  service: string;
  /** What the provider grants each key, as configured. */
  quota: KeyQuota;
  /** How the provider names its rate-limit headers. */
  dialect: RateLimitDialect;
  /** When the provider's day starts, in ms after UTC midnight. */
  dayResetMs: number;
  clock: Clock;
  /** Lifetime τ of leased tokens, in ms (sets the burst margin). */
  leaseMs: number;
  /** Builds the shared limiter of one key's requests (KV, or memory in local mode). */
  requestLimiter: (keyId: string, limits: ServiceLimits) => ScopeLimiter;
  /** Builds the shared ledger of one key's model tokens. */
  tokenStore: (keyId: string, limits: ServiceLimits) => CapacityStore;
  /** The keys' day counter (`rpd`: one budget per key id), closed by its owner. Needed for `rpd`. */
  days?: DayBudgets;
  /** Where the providers' word on each key is shared. Default: this instance only. */
  rates?: KeyRateStore;
  /** Takes a key out of rotation until `until` (quota spent, or the provider said 0 left). */
  rest: (key: PooledKey, until: number, reason: string) => void;
  /** Told of write failures (no key material). */
  log?: (event: string, detail: Record<string, unknown>) => void;
}

/** One key's pacing as this instance knows it. */
interface KeyPace {
  key: PooledKey;
  /** Requests per minute paced now (config, the provider's word, or what lasts to a day's reset). */
  rpm: number | undefined;
  requests: ScopeLimiter | undefined;
  tpm: number | undefined;
  tokens: TokenMeter | undefined;
  /** The provider's latest word, and when this instance last shared its own. */
  rate: KeyRate | undefined;
  sharedAt: number;
  /** The day budget of `rpd`, in the shape the day counter takes. */
  day: { name: string; daily: { requests: number } } | undefined;
}

/** An instance shares a key's record at most this often, unless a count reached 0. */
const SHARE_EVERY_MS = 250;

/**
 * How fast each key of one service may go: its configured quota
 * (`keyQuota`), what the provider's headers say of it, and its day's
 * count. Per-minute figures become a shared ledger per key (the same
 * limiter as a service's, so the same bound and no KV call while a lease
 * lasts); `rpd` is reserved in chunks like a team's daily budget; `tpm`
 * is a {@linkcode TokenMeter}. A key with no room is skipped by key choice.
 */
export class KeyPacing {
  readonly service: string;
  /** False when there is nothing to pace (no quota, no headers): the request path skips it all. */
  readonly active: boolean;
  #o: KeyPacingOptions;
  #paces = new Map<string, KeyPace>();
  #countsTokens: boolean;

  constructor(options: KeyPacingOptions) {
    this.#o = options;
    this.service = options.service;
    const q = options.quota;
    this.active = q.rpm !== undefined || q.rpd !== undefined || q.tpm !== undefined ||
      options.dialect !== "none";
    this.#countsTokens = q.tpm !== undefined;
    if (q.rpd !== undefined && options.days === undefined) {
      throw new RangeError("keyQuota.rpd needs a day counter (days)");
    }
  }

  /** Whether requests wait on the key's tokens per minute (and so need a cost). */
  get countsTokens(): boolean {
    return this.#countsTokens;
  }

  /**
   * Takes the key's turn now from memory, or false when it has no room now
   * (then {@linkcode KeyPacing.take} waits for it). Never calls KV.
   */
  room(key: PooledKey, now: number, cost: number): boolean {
    const p = this.#pace(key);
    if (p.day && !this.#o.days!.ready(p.day, now)) return false;
    if (p.tokens && cost > p.tokens.ceiling) return false;
    if (p.requests && !p.requests.tryToken(now)) return false;
    if (p.tokens && !p.tokens.tryTake(cost, now)) return false;
    if (p.day) this.#o.days!.spend(p.day, now);
    return true;
  }

  /**
   * Whether some key could ever take a request costing `cost` tokens (its
   * tokens-per-minute burst), so that a request no key can take is refused
   * before anything is reserved. True while no key counts tokens.
   */
  fits(keys: readonly PooledKey[], cost: number): boolean {
    return keys.some((k) => cost <= (this.#pace(k).tokens?.ceiling ?? Infinity));
  }

  /** The largest cost any key takes (see {@linkcode KeyPacing.fits}). */
  ceiling(keys: readonly PooledKey[]): number {
    return Math.max(...keys.map((k) => this.#pace(k).tokens?.ceiling ?? Infinity));
  }

  /** Waits (within the deadline) for the key's turn: its day count, its minute, its tokens. */
  async take(key: PooledKey, cost: number, wait: WaitOptions): Promise<KeyTurn> {
    const p = this.#pace(key);
    if (p.day) {
      const spent = await this.#o.days!.spend(p.day, this.#o.clock.now());
      if (!spent.ok) {
        // Until the reset, or (a day just seen spent, see `settle`) until it is looked at again.
        const until = Math.min(spent.resetsAt, this.#o.clock.now() + spent.retryAfterMs);
        this.#o.rest(key, until, "daily_quota");
        return { ok: false, retryAfterMs: spent.retryAfterMs };
      }
    }
    if (p.requests) {
      const turn = await p.requests.takeToken(wait);
      if (!turn.ok) return { ok: false, retryAfterMs: turn.retryAfterMs };
    }
    if (p.tokens) return await p.tokens.take(cost, wait.deadline, wait.signal);
    return { ok: true };
  }

  /** Adds what an answer used beyond the estimate sent with it to the key's tokens. */
  charge(key: PooledKey, estimate: number, used: number): void {
    this.#paces.get(key.id)?.tokens?.charge(used - estimate);
  }

  /**
   * Reads the rate-limit headers of an upstream answer (any status) and
   * paces the key by them; shares them with every instance.
   */
  observe(key: PooledKey, headers: Headers, now: number): void {
    if (this.#o.dialect === "none") return;
    if (!carriesRateHeaders(headers, this.#o.dialect)) return;
    const signal = readRateHeaders(this.#o.dialect, headers, now);
    if (signal.requests === undefined && signal.tokens === undefined) return;
    const rate: KeyRate = { at: now };
    if (signal.requests) rate.requests = signal.requests;
    if (signal.tokens) rate.tokens = signal.tokens;
    const p = this.#pace(key);
    // Each answer's word paces the key here; KV hears it at most every 250 ms
    // per key (a KV write per answer would double what a request costs KV),
    // and at once when a count is at 1 or less.
    const low = (rate.requests?.remaining ?? 2) <= 1 || (rate.tokens?.remaining ?? 2) <= 1;
    const share = low || now - p.sharedAt >= SHARE_EVERY_MS;
    this.#fold(p, rate, now, share);
    if (share) {
      p.sharedAt = now;
      this.#o.rates?.write(this.service, key.id, rate).catch((e) =>
        this.#o.log?.("key_rate_write_failed", { service: this.service, error: String(e) })
      );
    }
  }

  /** Whether this service shares the providers' rate headers through KV. */
  get sharesRates(): boolean {
    return this.#o.rates !== undefined && this.#o.dialect !== "none";
  }

  /** Reads what other instances learned of each key (called with the key-health refresh). */
  async refresh(keys: readonly PooledKey[]): Promise<void> {
    if (!this.#o.rates || this.#o.dialect === "none") return;
    const shared = await this.#o.rates.list(this.service);
    const now = this.#o.clock.now();
    for (const key of keys) {
      const rate = shared.get(key.id);
      const p = this.#pace(key);
      if (rate && rate.at > (p.rate?.at ?? -Infinity)) this.#fold(p, rate, now, false);
    }
  }

  /** Renews what the key limiters hold. */
  heartbeat(): void {
    for (const p of this.#paces.values()) p.requests?.heartbeat();
  }

  /** Hands back what the key limiters hold. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#paces.values()].map((p) => p.requests?.close()));
  }

  /** What this instance paces a key by, for the status page and tests. */
  paceOf(keyId: string): { rpm?: number; tpm?: number; rate?: KeyRate } | undefined {
    const p = this.#paces.get(keyId);
    return p && { rpm: p.rpm, tpm: p.tpm, rate: p.rate };
  }

  #pace(key: PooledKey): KeyPace {
    let p = this.#paces.get(key.id);
    if (p === undefined) {
      const q = this.#o.quota;
      p = {
        key,
        rpm: undefined,
        requests: undefined,
        tpm: undefined,
        tokens: undefined,
        rate: undefined,
        sharedAt: -Infinity,
        day: q.rpd === undefined ? undefined : { name: key.id, daily: { requests: q.rpd } },
      };
      this.#paces.set(key.id, p);
      this.#setRpm(p, q.rpm);
      this.#setTpm(p, q.tpm);
    }
    return p;
  }

  /**
   * Folds the provider's word into the key's pacing: a count at 0 rests the
   * key until its reset; a per-minute limit paces it (never above the
   * configured quota); a day's count running low paces it to last until
   * the reset. `own`: this instance got the answer (and it is time to
   * share it), so it also moves the shared ledgers down to what the
   * provider says is left.
   */
  #fold(p: KeyPace, rate: KeyRate, now: number, own: boolean): void {
    p.rate = rate;
    const { requests, tokens } = rate;
    for (const s of [requests, tokens]) {
      if (s?.remaining === 0 && s.resetAt !== undefined && s.resetAt > now) {
        const reason = s.window === "day" ? "daily_quota" : "rate_limited";
        this.#o.rest(p.key, s.resetAt, reason);
      }
    }
    const q = this.#o.quota;
    this.#setRpm(p, minOf(q.rpm, perMinute(requests), lastingPerMinute(requests, now)));
    this.#setTpm(p, minOf(q.tpm, perMinute(tokens)));
    if (!own) return;
    if (requests?.window === "minute" && requests.remaining !== undefined) {
      p.requests?.leaveAtMost(requests.remaining).catch(() => {});
    }
    if (tokens?.window === "minute" && tokens.remaining !== undefined) {
      p.tokens?.leaveAtMost(tokens.remaining);
    }
  }

  #setRpm(p: KeyPace, rpm: number | undefined): void {
    if (rpm === p.rpm || (rpm !== undefined && p.rpm !== undefined && near(rpm, p.rpm))) return;
    p.requests?.close().catch(() => {});
    p.rpm = rpm;
    p.requests = rpm === undefined
      ? undefined
      : this.#o.requestLimiter(p.key.id, perMinuteLimits(rpm, this.#o.leaseMs));
  }

  #setTpm(p: KeyPace, tpm: number | undefined): void {
    if (tpm === p.tpm || (tpm !== undefined && p.tpm !== undefined && near(tpm, p.tpm))) return;
    p.tpm = tpm;
    if (tpm !== undefined) this.#countsTokens = true;
    if (tpm === undefined) {
      p.tokens = undefined;
      return;
    }
    const limits = perMinuteLimits(tpm, this.#o.leaseMs);
    p.tokens = new TokenMeter({
      store: this.#o.tokenStore(p.key.id, limits),
      clock: this.#o.clock,
      tpm,
      burst: limits.burst,
      leaseMs: this.#o.leaseMs,
    });
  }
}
