import { casUpdate, keyHealthKey, keyHealthPrefix, kvCall, type KvCallOptions } from "../kv/mod.ts";

/** Why a key is out of rotation, and until when (epoch ms, judged by readers). */
export interface KeyHealth {
  state: "cooling" | "disabled";
  until: number;
  /** Consecutive 429s: the cool-down doubles with each. */
  strikes: number;
  reason: string;
}

/**
 * Key health in Deno KV, shared by every instance and kept across restarts.
 * Records carry their own end time; `expireIn` only cleans up after them.
 */
export class KeyHealthStore {
  #kv: Deno.Kv;
  #call: KvCallOptions;

  constructor(kv: Deno.Kv, options: { call?: KvCallOptions } = {}) {
    this.#kv = kv;
    this.#call = options.call ?? {};
  }

  /** Every health record of a service, by key id. */
  list(service: string): Promise<Map<string, KeyHealth>> {
    return kvCall(async () => {
      const out = new Map<string, KeyHealth>();
      for await (const e of this.#kv.list<KeyHealth>({ prefix: keyHealthPrefix(service) })) {
        out.set(String(e.key[2]), e.value);
      }
      return out;
    }, this.#call);
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
          };
        }
        const expireIn = Math.max(1000, next.until - now) + 600_000;
        return { write: next, expireIn, result: next };
      },
      { call: this.#call },
    );
    return update.ok ? update.result : health;
  }

  /** Forgets a key's record after a success (its 429 streak is over). */
  async clear(service: string, id: string): Promise<void> {
    await kvCall(() => this.#kv.delete(keyHealthKey(service, id)), this.#call);
  }
}
