/**
 * The gateway's background parts, as {@linkcode Lifecycle} runs them: the
 * heartbeat (presence, and each service's limiter, team pacing and key
 * pacing), the watch on the services' key records, the team list's
 * refresh, the minute counts' flush and the KV probe. Each sleeps when the instance has been idle a while.
 *
 * @module
 */
import type { Clock, TimerHandle } from "../clock/mod.ts";
import type { KvStatus } from "../kv/mod.ts";
import type { MinuteCounts } from "../status/mod.ts";
import type { TeamRegistry } from "../teams/mod.ts";
import type { BackgroundPart } from "./lifecycle.ts";
import { KeyStateWatch } from "./key_watch.ts";
import type { ServiceRuntime } from "./runtime.ts";

/** What the parts are made of. */
export interface BackgroundSources {
  clock: Clock;
  heartbeatMs: number;
  /** Writes this instance's presence record (undefined when limits are per instance). */
  beat: () => unknown;
  runtimes: ReadonlyMap<string, ServiceRuntime>;
  registry: TeamRegistry;
  minutes: MinuteCounts;
  kvStatus: KvStatus;
  /** The KV the services' key records are watched in. */
  kv: Deno.Kv;
  /** Whether to watch them (see `GatewayOptions.watchKv`); else they are polled. */
  watch: boolean;
}

/** The parts, in the order they start. */
export function backgroundParts(s: BackgroundSources): BackgroundPart[] {
  const parts: BackgroundPart[] = [heartbeat(s)];
  if (s.watch) parts.push(new KeyStateWatch(s.kv, s.runtimes, s.clock));
  return [
    ...parts,
    {
      name: "team_refresh",
      start: () => s.registry.resume(),
      stop: () => s.registry.pause(),
    },
    { name: "minute_counts", start: () => s.minutes.start(), stop: () => s.minutes.close() },
    { name: "kv_probe", start: () => s.kvStatus.resume(), stop: () => s.kvStatus.pause() },
  ];
}

/**
 * Every `heartbeatMs`: the presence record (so other instances count this
 * one) and each service's periodic upkeep. Woken after a sleep it beats at
 * once, so that the others count it again before its first lease.
 */
function heartbeat(s: BackgroundSources): BackgroundPart {
  let timer: TimerHandle | undefined;
  let started = false;
  const beat = () => {
    timer = s.clock.setTimeout(beat, s.heartbeatMs);
    s.beat();
    for (const rt of s.runtimes.values()) {
      rt.limiter.heartbeat();
      rt.teams?.heartbeat();
      rt.pacing?.heartbeat();
    }
  };
  return {
    name: "heartbeat",
    start() {
      // The first start follows the beat made while the gateway was built.
      if (started) s.beat();
      started = true;
      timer = s.clock.setTimeout(beat, s.heartbeatMs);
    },
    stop() {
      if (timer !== undefined) s.clock.clearTimeout(timer);
      timer = undefined;
    },
  };
}
