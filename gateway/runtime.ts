import type { Service } from "../config/mod.ts";
import type { KeyPacing, KeyPool, ProviderBackoff } from "../keys/mod.ts";
import { FreshView, type KvStatus } from "../kv/mod.ts";
import type { Clock, DayBudgets, ScopeLimiter } from "../limiter/mod.ts";
import type { FairGate, TeamLimiters } from "../teams/mod.ts";

/** How stale a key-health view may be before a request refreshes it in the background. */
const REFRESH_AFTER_MS = 500;
/** Past this age a request waits (briefly) for the refresh: no request acts on a view older than 1 s. */
const WAIT_AFTER_MS = 1000;
/** The longest a request waits on that refresh; KV trouble must not stall requests. */
const WAIT_AT_MOST_MS = 250;

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
  /** What other instances learned of the keys, read when a request needs it (kv/fresh_view.ts). */
  #view: FreshView;

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
    this.#view = new FreshView({
      clock: parts.clock,
      read: () =>
        Promise.all([
          this.pool.refresh(),
          this.pacing?.refresh(this.pool.keys),
          this.backoff?.refresh(),
        ]),
      onError: parts.onError,
      status: parts.status,
      refreshAfterMs: REFRESH_AFTER_MS,
      waitAfterMs: WAIT_AFTER_MS,
      waitAtMostMs: WAIT_AT_MOST_MS,
    });
  }

  /** KV is back: health learned meanwhile goes to KV, and the next request reads KV's. */
  rejoin(): void {
    this.pool.writeBack(this.#clock.now());
    this.keyDays.flush().catch(() => {});
    this.#view.forget();
  }

  /**
   * Makes sure the key-health view is at most about a second old (another
   * instance may have cooled a key). Returns a promise only when the caller
   * must wait for a refresh: the usual request allocates nothing here.
   *
   * @param now The clock's reading, when the caller has just taken one. Default: read now.
   */
  fresh(now?: number): Promise<void> | undefined {
    return this.#view.fresh(now);
  }

  /** The view is read again in the background if it is getting old (see {@linkcode FreshView.refreshSoon}). */
  refreshSoon(now: number): void {
    this.#view.refreshSoon(now);
  }

  /** Whether every watch over this service's key records is live (see key_watch.ts). */
  get watched(): boolean {
    return this.#view.watched;
  }

  /** How many watches cover this service's key records (0: none; polled). */
  watchedBy(watches: number): void {
    this.#view.watchedBy(watches);
  }

  /** One of those watches is live, or no longer. */
  watchLive(live: boolean): void {
    this.#view.watchLive(live);
  }

  /** A watched record changed: the view is read again (see {@linkcode FreshView.changed}). */
  changed(): void {
    this.#view.changed();
  }
}
