import {
  keyRateKey,
  keyRatePrefix,
  kvCall,
  type KvCallOptions,
  type KvList,
  type KvWrite,
  listByNextPart,
} from "../kv/mod.ts";
import type { LimitState } from "../providers/rate_headers.ts";

/** What a provider last said of one key's limits, and when (epoch ms). */
export interface KeyRate {
  requests?: LimitState;
  tokens?: LimitState;
  at: number;
}

/** Records are kept a while after their last write: a day window's count matters for hours. */
const KEEP_MS = 86_400_000;

/**
 * The providers' word on each key, in Deno KV: written by the instance that
 * got the answer, read by every instance with the key health (at most
 * about a second old), so that each paces the key by the same figures.
 */
export class KeyRateStore {
  #kv: KvWrite & KvList;
  #call: KvCallOptions;

  constructor(kv: KvWrite & KvList, options: { call?: KvCallOptions } = {}) {
    this.#kv = kv;
    this.#call = options.call ?? {};
  }

  /** Every key's record of a service, by key id. */
  list(service: string): Promise<Map<string, KeyRate>> {
    return listByNextPart<KeyRate>(this.#kv, keyRatePrefix(service), this.#call);
  }

  /** Stores what an answer said (a later answer's word replaces an earlier one's). */
  async write(service: string, keyId: string, rate: KeyRate): Promise<void> {
    await kvCall(
      () => this.#kv.set(keyRateKey(service, keyId), rate, { expireIn: KEEP_MS }),
      this.#call,
    );
  }
}
