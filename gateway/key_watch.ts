/**
 * Other instances' word on a service's keys, heard when it changes instead
 * of read on a timer.
 *
 * What instances tell each other about keys lives in three kinds of KV
 * record: each key's health (a rest), each key's rate-limit headers, and
 * the provider-wide pause. Reading them every 500 ms while requests come
 * (three reads per instance and service) was most of kvgate's KV calls on
 * Deno Deploy. Every record's key is known in advance, so one `kv.watch`
 * per ten of them (kv/watch.ts) says when any changes; only then does the
 * service read them again (`ServiceRuntime.changed`). While a watch is not
 * live (not yet started, KV down, the stream broken) the runtime polls as
 * before, and a slow poll stays on as a backstop even while it is.
 *
 * A background part: it runs while the instance is awake (lifecycle.ts).
 *
 * @module
 */
import type { Clock } from "../lib/mod.ts";
import {
  keyHealthKey,
  keyRateKey,
  KEYS_PER_WATCH,
  KeyWatch,
  providerBackoffKey,
} from "../kv/mod.ts";
import type { BackgroundPart } from "./lifecycle.ts";
import type { ServiceRuntime } from "./runtime.ts";

/** The KV keys whose records other instances write about `rt`'s keys. */
function watchedKeys(rt: ServiceRuntime): Deno.KvKey[] {
  const name = rt.service.name;
  const keys: Deno.KvKey[] = rt.pool.keys.map((k) => keyHealthKey(name, k.id));
  if (rt.pacing?.sharesRates) { for (const k of rt.pool.keys) keys.push(keyRateKey(name, k.id)); }
  if (rt.backoff) keys.push(providerBackoffKey(name));
  return keys;
}

/** Watches the key records of every service while the instance is awake. */
export class KeyStateWatch implements BackgroundPart {
  readonly name = "key_watch";
  #watches: KeyWatch[] = [];

  constructor(kv: Deno.Kv, runtimes: ReadonlyMap<string, ServiceRuntime>, clock: Clock) {
    // Each service's keys in watches of ten: a service is watched when all of its are live.
    for (const rt of runtimes.values()) {
      // A service without keys is never sent to: nothing to hear of.
      if (rt.pool.keys.length === 0) continue;
      const keys = watchedKeys(rt);
      let watches = 0;
      for (let i = 0; i < keys.length; i += KEYS_PER_WATCH) {
        watches++;
        this.#watches.push(
          new KeyWatch(kv, keys.slice(i, i + KEYS_PER_WATCH), clock, {
            changed: () => rt.changed(),
            live: (on) => rt.watchLive(on),
          }),
        );
      }
      rt.watchedBy(watches);
    }
  }

  start(): void {
    for (const w of this.#watches) w.start();
  }

  stop(): void {
    for (const w of this.#watches) w.stop();
  }
}
