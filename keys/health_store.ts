import {
  casUpdate,
  keyHealthKey,
  keyHealthPrefix,
  kvCall,
  type KvCallOptions,
  type KvCas,
  type KvList,
  type KvWrite,
  listByNextPart,
} from "../kv/mod.ts";

/** Why a key is out of rotation, and until when (epoch ms, judged by readers). */
export interface KeyHealth {
  state: "cooling" | "disabled";
  until: number;
  /** Consecutive 429s: the cool-down doubles with each. */
  strikes: number;
  reason: string;
  /**
   * When the decision was made (epoch ms). Between two decisions on a key
   * the later wins, so that an admin's "enable" beats an earlier rest.
   */
  setAt?: number;
}

/**
 * Key health in Deno KV, shared by every instance and kept across restarts.
 * Records carry their own end time; `expireIn` only cleans up after them.
 */
export class KeyHealthStore {
  #kv: KvCas & KvWrite & KvList;
  #call: KvCallOptions;

  constructor(kv: KvCas & KvWrite & KvList, options: { call?: KvCallOptions } = {}) {
    this.#kv = kv;
    this.#call = options.call ?? {};
  }

  /** Every health record of a service, by key id. */
  list(service: string): Promise<Map<string, KeyHealth>> {
    return listByNextPart<KeyHealth>(this.#kv, keyHealthPrefix(service), this.#call);
  }

  /**
   * Records a rest; when another instance recorded a longer one meanwhile,
   * the longer wins (compare-and-set on the versionstamp). Returns what is stored.
   */
  async mark(service: string, id: string, health: KeyHealth, now: number): Promise<KeyHealth> {
    const update = await casUpdate<KeyHealth, KeyHealth>(
      this.#kv,
      keyHealthKey(service, id),
      (old) => {
        let next = health;
        if (old && old.until > now) {
          next = {
            state: old.state === "disabled" || health.state === "disabled" ? "disabled" : "cooling",
            until: Math.max(old.until, health.until),
            strikes: Math.max(old.strikes, health.strikes),
            reason: old.until > health.until ? old.reason : health.reason,
            setAt: Math.max(old.setAt ?? 0, health.setAt ?? 0),
          };
        }
        const expireIn = Math.max(1000, next.until - now) + 600_000;
        return { write: next, expireIn, result: next };
      },
      { call: this.#call },
    );
    return update.ok ? update.result : health;
  }

  /**
   * An admin ends a key's rest (a cool-down, or a disable): a record that
   * ended now, decided now, so that it beats every earlier rest on every
   * instance (see `KeyPool.refresh`).
   */
  async enable(service: string, id: string, now: number): Promise<KeyHealth> {
    const record: KeyHealth = {
      state: "cooling",
      until: now,
      strikes: 0,
      reason: "enabled_by_admin",
      setAt: now,
    };
    await kvCall(
      () => this.#kv.set(keyHealthKey(service, id), record, { expireIn: 600_000 }),
      this.#call,
    );
    return record;
  }

  /** Forgets a key's record after a success (its 429 streak is over). */
  async clear(service: string, id: string): Promise<void> {
    await kvCall(() => this.#kv.delete(keyHealthKey(service, id)), this.#call);
  }
}
