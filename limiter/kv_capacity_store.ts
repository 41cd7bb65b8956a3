import {
  bucketKey,
  casUpdate,
  kvCall,
  type KvCallOptions,
  type KvCas,
  type KvList,
  ledgerClaimKey,
  ledgerReadRange,
  type LimitScope,
  slotsKey,
  tokenLedgerKey,
} from "../kv/mod.ts";
import { KvBucket } from "./kv_bucket.ts";
import { emissionMicros, handBack, ledgerNow, reservationEnd, scheduleOf } from "./gcra.ts";
import {
  type CapacityLevels,
  type CapacityStore,
  type ServiceLimits,
  SlotContention,
  type TokenLease,
} from "./capacity_store.ts";
import { readLevels, type SlotHolder, type SlotsState } from "./capacity_levels.ts";
import type { Clock } from "../lib/mod.ts";

export type { SlotHolder, SlotsState } from "./capacity_levels.ts";

/** Options for {@linkcode KvCapacityStore}. */
export interface KvCapacityStoreOptions {
  /** This instance's id; its slot claim is filed under it. */
  instanceId: string;
  clock: Clock;
  /** How long a slot claim counts without renewal, in ms. Default 15000. */
  slotTtlMs?: number;
  /** Timeout and retries of each KV call. */
  call?: KvCallOptions;
  /** Random numbers in [0, 1) for the wait after contention. Default: `Math.random`. */
  random?: () => number;
  /** Compare-and-set attempts before a lease gives up for now. Default 8. */
  maxConflicts?: number;
  /**
   * How far instance clocks may disagree, in ms: a ledger read lists the
   * claims made since this long before its own. Default 3000.
   */
  clockSkewMs?: number;
  /**
   * How tokens are shared. `"ledger"` (default): a GCRA ledger changed by
   * conflict-free `max`/`sum`, then read back; instances never conflict, and
   * a lease may be granted for later rather than refused. `"compare_and_set"`:
   * a bucket record changed by `check` on its versionstamp, refused when
   * empty (kept as the baseline the benchmark compares against).
   */
  tokens?: "ledger" | "compare_and_set";
}

/** This instance's latest ledger reservation, for handing back its unused tail. */
interface LastReservation {
  n: number;
  /** Its exact end on the ledger. */
  end: bigint;
  claim: ReturnType<typeof ledgerClaimKey>;
  /** The ledger's versionstamp as read back. */
  ledgerVersionstamp: string;
  /** True when nobody had reserved after it at the read. */
  last: boolean;
}

/** Claims are read for this long at least (a reader lists only recent ones); clean-up after. */
const CLAIM_EXPIRE_MS = 60_000;
/** Claims one read-back may hold; more would span two reads (two snapshots). */
const CLAIM_READ_BATCH = 500;

/**
 * Capacity shared by every instance through Deno KV, changed only by
 * atomic operations. Tokens: a conflict-free GCRA ledger (or, as the
 * baseline, a compare-and-set bucket). Slots: one record of per-instance
 * claims with expiry time stamps, changed by compare-and-set.
 */
export class KvCapacityStore implements CapacityStore {
  readonly shared = true;
  #kv: KvCas & KvList;
  #service: LimitScope;
  #limits: ServiceLimits;
  #me: string;
  #clock: Clock;
  #ttl: number;
  #call: KvCallOptions;
  #maxConflicts: number;
  #tokens: "ledger" | "compare_and_set";
  #lastReservation: LastReservation | undefined;
  #claimSeq = 0;
  #clockSkewMs: number;
  #random: () => number;
  /** The baseline token store (`tokens: "compare_and_set"`). */
  #bucket: KvBucket;

  constructor(
    kv: KvCas & KvList,
    service: LimitScope,
    limits: ServiceLimits,
    options: KvCapacityStoreOptions,
  ) {
    this.#kv = kv;
    this.#service = service;
    this.#limits = limits;
    this.#me = options.instanceId;
    this.#clock = options.clock;
    this.#ttl = options.slotTtlMs ?? 15_000;
    this.#call = options.call ?? {};
    this.#maxConflicts = options.maxConflicts ?? 8;
    this.#tokens = options.tokens ?? "ledger";
    this.#clockSkewMs = options.clockSkewMs ?? 3000;
    this.#random = options.random ?? Math.random;
    this.#bucket = new KvBucket(kv, bucketKey(service), limits, {
      clock: this.#clock,
      call: this.#call,
      attempts: this.#maxConflicts,
      random: this.#random,
    });
    if (this.#tokens !== "ledger" && this.#tokens !== "compare_and_set") {
      throw new RangeError(`tokens must be "ledger" or "compare_and_set" (got ${this.#tokens})`);
    }
  }

  leaseTokens(want: number): Promise<TokenLease> {
    return this.#tokens === "ledger" ? this.#reserve(want) : this.#bucket.lease(want);
  }

  levels(): Promise<CapacityLevels | null> {
    const now = this.#clock.now();
    return readLevels(this.#kv, this.#service, this.#limits, this.#tokens, now, this.#call);
  }

  returnTokens(n: number): Promise<void> {
    return this.#tokens === "ledger" ? this.#handBackTail(n) : this.#bucket.giveBack(n);
  }

  /**
   * Moves the shared count so that at most `available` tokens are free now.
   * On the ledger a conflict-free `max`: a reservation read back after it
   * only finds its place later than it is (slower, never faster).
   */
  async leaveAtMost(available: number): Promise<void> {
    const now = this.#clock.now();
    if (this.#tokens === "ledger") {
      const missing = BigInt(Math.max(0, this.#limits.burst - Math.max(0, Math.floor(available))));
      const floor = ledgerNow(now) + missing * emissionMicros(this.#limits);
      await kvCall(
        () => this.#kv.atomic().max(tokenLedgerKey(this.#service), floor).commit(),
        this.#call,
      );
      return;
    }
    await this.#bucket.leaveAtMost(available);
  }

  /**
   * Reserves `want` tokens on the ledger: one conflict-free commit (ledger
   * and claim together), then one list that reads the claims and the ledger
   * in a single snapshot, which gives the reservation's exact place.
   */
  async #reserve(want: number): Promise<TokenLease> {
    const ledger = tokenLedgerKey(this.#service);
    const now = this.#clock.now();
    const claim = ledgerClaimKey(this.#service, Math.floor(now), this.#me, this.#claimSeq++);
    const committed = await kvCall(
      () =>
        this.#kv.atomic()
          .max(ledger, ledgerNow(now))
          .sum(ledger, BigInt(want) * emissionMicros(this.#limits))
          .set(claim, new Deno.KvU64(BigInt(want)), { expireIn: CLAIM_EXPIRE_MS })
          .commit(),
      this.#call,
    );
    if (!committed.ok) throw new Error("ledger commit refused"); // no checks: cannot happen
    const range = ledgerReadRange(this.#service, Math.floor(now) - this.#clockSkewMs);
    const entries = await kvCall(async () => {
      const out: Deno.KvEntry<Deno.KvU64>[] = [];
      for await (const e of this.#kv.list<Deno.KvU64>(range, { batchSize: CLAIM_READ_BATCH })) {
        out.push(e);
      }
      return out;
    }, this.#call);
    const tatEntry = entries.at(-1);
    if (
      entries.length >= CLAIM_READ_BATCH || !tatEntry ||
      tatEntry.key.length !== ledger.length
    ) {
      // More claims than one read holds, so no single snapshot: the place is
      // unknown, and the tokens are left unused (safe) rather than guessed.
      return { granted: 0, retryAfterMs: 50 };
    }
    const claims = entries.slice(0, -1).map((e) => ({
      versionstamp: e.versionstamp,
      n: Number(e.value.value),
    }));
    const end = reservationEnd(tatEntry.value.value, committed.versionstamp, claims, this.#limits);
    this.#lastReservation = {
      n: want,
      end,
      claim,
      ledgerVersionstamp: tatEntry.versionstamp,
      last: tatEntry.versionstamp === committed.versionstamp,
    };
    return { granted: want, retryAfterMs: 0, ...scheduleOf(end, want, this.#limits) };
  }

  /**
   * Hands back the unused tail of the latest reservation, only if nobody
   * reserved after it (checked on the ledger's versionstamp); its claim is
   * lowered in the same operation, so every reader's sums stay exact.
   * Earlier tokens sit between other instances' reservations and cannot be
   * taken back safely.
   */
  async #handBackTail(n: number): Promise<void> {
    const r = this.#lastReservation;
    if (!r?.last || n <= 0) return;
    this.#lastReservation = undefined;
    const giving = Math.min(n, r.n);
    const back = handBack(r.end, giving, this.#clock.now(), this.#limits);
    if (back === undefined) return;
    const ledger = tokenLedgerKey(this.#service);
    await kvCall(
      () =>
        this.#kv.atomic().check({ key: ledger, versionstamp: r.ledgerVersionstamp })
          .set(ledger, new Deno.KvU64(back))
          .set(r.claim, new Deno.KvU64(BigInt(r.n - giving)), { expireIn: CLAIM_EXPIRE_MS })
          .commit(),
      this.#call,
    );
  }

  async holdSlots(target: number): Promise<number> {
    const update = await casUpdate<SlotsState, number>(
      this.#kv,
      slotsKey(this.#service),
      (value) => {
        const now = this.#clock.now();
        const holders: Record<string, SlotHolder> = {};
        let others = 0;
        for (const [id, h] of Object.entries(value?.holders ?? {})) {
          if (h.expiresAt <= now || id === this.#me) continue;
          holders[id] = h;
          others += h.n;
        }
        const mine = value?.holders[this.#me];
        const current = mine && mine.expiresAt > now ? mine.n : 0;
        const room = Math.max(0, this.#limits.maxConn - others);
        const granted = target <= current ? target : Math.min(target, Math.max(current, room));
        // Nothing to gain and the claim is fresh: skip the write (a waiting poll).
        if (
          granted === current && target > current && mine && mine.expiresAt - now > this.#ttl / 2
        ) {
          return { done: current };
        }
        if (granted > 0) holders[this.#me] = { n: granted, expiresAt: now + this.#ttl };
        return { write: { holders }, expireIn: this.#ttl * 4, result: granted };
      },
      { attempts: this.#maxConflicts, call: this.#call },
    );
    // Under contention nothing was written, so nothing was renewed: the lease must not count on it.
    if (!update.ok) throw new SlotContention();
    return update.result;
  }
}
