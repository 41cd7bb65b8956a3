/**
 * Where a service's provider-wide pause is kept for every instance: one
 * record in KV, read, replaced and claimed (the probe) through the one
 * compare-and-set loop. The policy is {@linkcode ProviderBackoff}'s; this
 * module only keeps its record.
 *
 * @module
 */
import {
  casUpdate,
  kvCall,
  type KvCallOptions,
  type KvCas,
  type KvWrite,
  providerBackoffKey,
} from "../kv/mod.ts";

/** A service's pause, as shared in KV. */
export interface BackoffRecord {
  /** Epoch ms until which no request goes to the provider. */
  until: number;
  /** Pauses in a row (a probe refused doubles the next). */
  strikes: number;
  pauseMs: number;
  reason: string;
  /** The instance whose single request tests the provider after the pause, and until when it may. */
  probe?: { by: string; until: number };
  /** Paused by an admin: no request goes, none waits, until an admin resumes it. */
  admin?: boolean;
}

/**
 * Whether a request may go to the provider now (`probe`: it is the single
 * one after a pause); if not, until when, or `admin` when an admin paused it.
 */
export type BackoffTurn =
  | { go: true; probe: boolean }
  | { go: false; untilMs: number; admin?: boolean };

/** How often a request waiting on another instance's probe looks again, in ms. */
export const PROBE_POLL_MS = 250;

/** The turn of a request that may go (not the probe): one frozen object, allocated once. */
export const GO: BackoffTurn = Object.freeze({ go: true, probe: false });

/** An admin's pause: no end, until an admin resumes the service. */
export function adminPauseRecord(): BackoffRecord {
  return {
    until: Number.MAX_SAFE_INTEGER,
    strikes: 0,
    pauseMs: 0,
    reason: "paused by an admin",
    admin: true,
  };
}

/** Whether two reads of the pause say the same (else its waiters look again). */
export function samePause(a: BackoffRecord | undefined, b: BackoffRecord | undefined): boolean {
  return a === b ||
    (a !== undefined && b !== undefined && a.until === b.until && a.admin === b.admin &&
      a.probe?.by === b.probe?.by);
}

/** A service's pause record in KV (see the module doc). */
export class BackoffStore {
  #kv: KvCas & KvWrite;
  #key: Deno.KvKey;
  #call: KvCallOptions;

  constructor(kv: KvCas & KvWrite, service: string, call: KvCallOptions = {}) {
    this.#kv = kv;
    this.#key = providerBackoffKey(service);
    this.#call = call;
  }

  /** The pause in force, as other instances left it. */
  async read(): Promise<BackoffRecord | null> {
    return (await kvCall(() => this.#kv.get<BackoffRecord>(this.#key), this.#call)).value;
  }

  /** Writes an admin's pause as it is (it has no end: no expiry). */
  async set(rec: BackoffRecord): Promise<void> {
    await kvCall(() => this.#kv.set(this.#key, rec), this.#call);
  }

  /** Removes the pause (an admin resumed the service). */
  async remove(): Promise<void> {
    await kvCall(() => this.#kv.delete(this.#key), this.#call);
  }

  /** Replaces the record by `next(old)` (null: none); kept a while past the pause's end. */
  async update(
    next: (old: BackoffRecord | null) => BackoffRecord | null,
    now: number,
  ): Promise<void> {
    await casUpdate<BackoffRecord, void>(this.#kv, this.#key, (old) => {
      const rec = next(old);
      if (rec === old) return { done: undefined };
      if (rec === null) {
        return old === null ? { done: undefined } : { remove: true, result: undefined };
      }
      return { write: rec, expireIn: Math.max(0, rec.until - now) + 600_000, result: undefined };
    }, { call: this.#call });
  }

  /**
   * Claims the probe after a pause for `probe.by`, unless the pause was
   * made longer or another instance probes: go (the probe), or when to look again.
   */
  async claimProbe(probe: { by: string; until: number }, now: number): Promise<BackoffTurn> {
    const claim = await casUpdate<BackoffRecord, BackoffTurn>(this.#kv, this.#key, (old) => {
      if (old === null) return { done: GO };
      if (old.until > now) return { done: { go: false, untilMs: old.until } };
      if (old.probe && old.probe.by !== probe.by && old.probe.until > now) {
        return { done: { go: false, untilMs: now + PROBE_POLL_MS } };
      }
      return { write: { ...old, probe }, expireIn: 600_000, result: { go: true, probe: true } };
    }, { call: this.#call });
    return claim.ok ? claim.result : { go: false, untilMs: now + PROBE_POLL_MS };
  }
}
