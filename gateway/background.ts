/**
 * The gateway's background parts, as {@linkcode Lifecycle} runs them: the
 * heartbeat (presence, and each service's limiter, team pacing and key
 * pacing), the watches on the services' key records and on the teams'
 * changes, the minute counts' flush and the KV probe, each asleep when the
 * instance has been idle a while; and what is written behind — each
 * service's hand-backs and key rests, the teams' day budgets, the presence
 * record — written again when KV returns, handed back at the end in this
 * order, and waited for.
 *
 * @module
 */
import type { Clock, TimerHandle } from "../lib/mod.ts";
import type { KvStatus } from "../kv/mod.ts";
import type { DayBudgets, Presence } from "../limiter/mod.ts";
import type { MinuteCounts } from "../status/mod.ts";
import type { TeamRegistry } from "../teams/mod.ts";
import type { BackgroundPart } from "./lifecycle.ts";
import { KeyStateWatch } from "./key_watch.ts";
import type { ServiceRuntime } from "./runtime.ts";

/** What the parts are made of. */
export interface BackgroundSources {
  /** The teams' day budgets: reservations and counts written behind. */
  budgets: DayBudgets;
  /** This instance's presence record, left at the end (undefined when limits are per instance). */
  presence: Presence | undefined;
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
      name: "team_watch",
      start: () => s.registry.resume(),
      stop: () => s.registry.pause(),
      close: () => Promise.resolve(s.registry.close()),
    },
    { name: "minute_counts", start: () => s.minutes.start(), stop: () => s.minutes.close() },
    { name: "kv_probe", start: () => s.kvStatus.resume(), stop: () => s.kvStatus.pause() },
    services(s.runtimes),
    {
      name: "day_budgets",
      rejoin: () => void s.budgets.flush().catch(() => {}),
      close: () => s.budgets.close(),
      // Once more at the very end: the tokens of the last answers to finish.
      settled: () => s.budgets.close(),
    },
    {
      name: "presence",
      rejoin: () => void s.beat(),
      close: async () => await s.presence?.leave().catch(() => {}),
    },
  ];
}

/**
 * What each service's runtime holds and writes behind: its gate's waiters,
 * its limiter's tokens and slots, its teams' and keys' pacing, its keys'
 * rests. Closed step by step, each step for all services at once.
 */
function services(runtimes: ReadonlyMap<string, ServiceRuntime>): BackgroundPart {
  const rts = [...runtimes.values()];
  // Step by step over all services, each step settled whatever the others do:
  // one limiter's failed hand-back must not keep its key rests from being written.
  const each = (f: (rt: ServiceRuntime) => unknown) => Promise.allSettled(rts.map(f));
  return {
    name: "services",
    rejoin: () => rts.forEach((rt) => rt.rejoin()),
    async close() {
      for (const rt of rts) rt.gate?.close();
      await each((rt) => rt.limiter.close());
      await each((rt) => rt.teams?.close());
      await each((rt) => rt.pacing?.close());
      await each((rt) => rt.keyDays.close());
      await each((rt) => rt.pool.settled());
    },
    async settled() {
      await each((rt) => rt.limiter.settled());
      await each((rt) => rt.teams?.settled());
      // Once more at the very end: the tokens of the last answers to finish.
      await each((rt) => rt.keyDays.close());
      await each((rt) => rt.pool.settled());
    },
  };
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
