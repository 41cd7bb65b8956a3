import type { Service } from "../config/mod.ts";
import type { KeyPacing, KeyPool, ProviderBackoff } from "../keys/mod.ts";
import type { KvStatus } from "../kv/mod.ts";
import type { Clock, DayBudgets, ScopeLimiter } from "../limiter/mod.ts";
import type { FairGate, TeamLimiters } from "../teams/mod.ts";

/** How stale a key-health view may be before a request refreshes it in the background. */
const REFRESH_AFTER_MS = 500;
/** Past this age a request waits (briefly) for the refresh: no request acts on a view older than 1 s. */
const WAIT_AFTER_MS = 1000;
/** The longest a request waits on that refresh; KV trouble must not stall requests. */
const WAIT_AT_MOST_MS = 250;
/** While a watch tells of changes (key_watch.ts), the view is read again at least this often. */
const BACKSTOP_MS = 30_000;
/** Refreshes that changes ask for start at least this far apart, in ms. */
const CHANGED_SPACING_MS = 250;

/** What {@linkcode ServiceRuntime} is made of. */
export interface ServiceRuntimeParts {
  service: Service;
  pool: KeyPool;
  limiter: ScopeLimiter;
  clock: Clock;
  /** Told when a key-health read fails. */
  onError: (e: unknown) => void;
  /** Whether KV answers; while it does not, key health comes from memory alone. */
  status?: KvStatus;
  /** The teams' fair share of the service, when there are teams. */
  gate?: FairGate;
  /** The teams' own pacing on the service, when there are teams. */
  teams?: TeamLimiters;
  /** Each key's pacing (quota, the provider's headers), when there is any. */
  pacing?: KeyPacing;
  /** Each key's requests and tokens on the provider's day (its `rpd` budget too, with one). */
  keyDays: DayBudgets;
  /** The pause of the whole service when its provider refuses every key. */
  backoff?: ProviderBackoff;
}

/**
 * One service's live state in this instance: its key pool, its limiter,
 * its keys' pacing and its provider-wide pause. What other instances
 * learned of the keys (health, the providers' headers, the pause) is read
 * together, so a request acts on a view at most about a second old.
 */
export class ServiceRuntime {
  readonly service: Service;
  readonly pool: KeyPool;
  readonly limiter: ScopeLimiter;
  readonly gate: FairGate | undefined;
  readonly teams: TeamLimiters | undefined;
  /** Undefined when no key is paced (no quota, no headers): the request path skips it. */
  readonly pacing: KeyPacing | undefined;
  readonly keyDays: DayBudgets;
  readonly backoff: ProviderBackoff | undefined;
  #clock: Clock;
  #checkedAt = -Infinity;
  #refreshing: Promise<void> | undefined;
  #onError: (e: unknown) => void;
  #status: KvStatus | undefined;
  /** Watches covering this service's key records, and how many of them are live. */
  #watches = 0;
  #watchesLive = 0;
  #refreshStartedAt = -Infinity;
  #again = false;
  #changedTimer: ReturnType<Clock["setTimeout"]> | undefined;

  constructor(parts: ServiceRuntimeParts) {
    this.service = parts.service;
    this.pool = parts.pool;
    this.limiter = parts.limiter;
    this.gate = parts.gate;
    this.teams = parts.teams;
    this.pacing = parts.pacing?.active ? parts.pacing : undefined;
    this.keyDays = parts.keyDays;
    this.backoff = parts.backoff;
    this.#clock = parts.clock;
    this.#onError = parts.onError;
    this.#status = parts.status;
  }

  /** KV is back: health learned meanwhile goes to KV, and the next request reads KV's. */
  rejoin(): void {
    this.pool.writeBack(this.#clock.now());
    this.keyDays.flush().catch(() => {});
    this.#checkedAt = -Infinity;
  }

  /**
   * Makes sure the key-health view is at most about a second old (another
   * instance may have cooled a key). Returns a promise only when the caller
   * must wait for a refresh: the usual request allocates nothing here.
   *
   * @param now The clock's reading, when the caller has just taken one. Default: read now.
   */
  fresh(now: number = this.#clock.now()): Promise<void> | undefined {
    const age = now - this.#checkedAt;
    if (age < REFRESH_AFTER_MS) return undefined;
    // Watched, the view is read again when it changes: it is as fresh as the watch, and the slow
    // backstop read goes on in the background. (Waited for, it put a KV round trip on the path of
    // one request every 30 s: bench:regions saw 180 ms against 50 at KV 120 ms away.)
    if (this.watched) {
      if (age >= BACKSTOP_MS) this.#refresh();
      return undefined;
    }
    // KV is down: the view in memory is all there is; waiting would only add latency.
    if (this.#status !== undefined && !this.#status.up) return undefined;
    this.#refresh();
    if (age < WAIT_AFTER_MS) return undefined;
    let timer: ReturnType<Clock["setTimeout"]> | undefined;
    return Promise.race([
      this.#refreshing!,
      new Promise<void>((r) => timer = this.#clock.setTimeout(r, WAIT_AT_MOST_MS)),
    ]).finally(() => this.#clock.clearTimeout(timer!));
  }

  /** Whether every watch over this service's key records is live (see key_watch.ts). */
  get watched(): boolean {
    return this.#watches > 0 && this.#watchesLive === this.#watches;
  }

  /** How many watches cover this service's key records (0: none; polled). */
  watchedBy(watches: number): void {
    this.#watches = watches;
    this.#watchesLive = 0;
  }

  /** One of those watches is live, or no longer. */
  watchLive(live: boolean): void {
    this.#watchesLive = Math.max(0, this.#watchesLive + (live ? 1 : -1));
  }

  /**
   * A watched record changed: read the view again now (in the background),
   * or, when a refresh has just started, once it is over.
   */
  changed(): void {
    if (this.#refreshing || this.#changedTimer !== undefined) {
      this.#again = true;
      return;
    }
    const wait = this.#refreshStartedAt + CHANGED_SPACING_MS - this.#clock.now();
    if (wait <= 0) return void this.#refresh();
    this.#changedTimer = this.#clock.setTimeout(() => {
      this.#changedTimer = undefined;
      this.#refresh();
    }, wait);
  }

  /** Reads the shared view (key health, the providers' word, the pause), one refresh at a time. */
  #refresh(): void {
    if (this.#refreshing) return;
    this.#again = false;
    this.#refreshStartedAt = this.#clock.now();
    this.#refreshing = Promise.all([
      this.pool.refresh(),
      this.pacing?.refresh(this.pool.keys),
      this.backoff?.refresh(),
    ]).then(() => {}, this.#onError).finally(() => {
      this.#checkedAt = this.#clock.now();
      this.#refreshing = undefined;
      if (this.#again) this.changed();
    });
  }
}
