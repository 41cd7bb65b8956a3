/**
 * What one instance's services share, made once from the configuration:
 * its clock, log and id, whether KV answers, how KV is called, presence
 * (how many instances are live), the key stores, and the teams.
 *
 * @module
 */
import type { GatewayConfig } from "../config/mod.ts";
import { KeyHealthStore, KeyRateStore } from "../keys/mod.ts";
import { kvCall, type KvCallOptions, KvStatus, probeKey, teamUsageKey } from "../kv/mod.ts";
import { type Clock, DayBudgets, Presence, systemClock } from "../limiter/mod.ts";
import { TeamRegistry } from "../teams/mod.ts";
import { isoTime, jsonLog, type LogLine } from "./log.ts";
import type { TeamServices } from "./stage_deps.ts";
import { requestId } from "../lib/request_id.ts";
import type { ServiceContext } from "./service_build.ts";

/** Options for {@linkcode createGateway}; each has a production default. */
export interface GatewayOptions {
  /** Where shared state lives. Required: limits and key health are kept here. */
  kv: Deno.Kv;
  /** Calls upstreams. Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Time and timers for the limiter. Default: the system clock. */
  clock?: Clock;
  /** Receives one object per log line. Default: JSON on stdout. */
  log?: (line: LogLine) => void;
  /** The oldest view of the teams made through the admin API a request acts on, in ms. Default 2000. */
  teamRefreshMs?: number;
  /** This instance's id in KV. Default: a fresh ULID. */
  instanceId?: string;
  /** How often the minute counts (the status chart) are added in KV, in ms. Default 5000. */
  minuteFlushMs?: number;
  /** Where this instance runs, when the platform says (`DENO_REGION`). Default: not said. */
  region?: string;
  /** Random numbers for jitter. Default: `Math.random`. */
  random?: () => number;
  /** Heartbeat period for presence and slot renewal, in ms. Default: slotTtlMs / 3. */
  heartbeatMs?: number;
  /**
   * Whether KV answers (see `kv/connect.ts`, which makes one for a KV that
   * may still be opening). Default: one taken to be up, probing `kv` after
   * a failure.
   */
  kvStatus?: KvStatus;
  /** What the status shows about where KV lives, when it needs saying (no KV attached). */
  kvWarning?: string;
  /**
   * Hear other instances' key and team changes through `kv.watch` rather
   * than reading them on a timer: only where KV tells every instance of
   * every write (Deploy's KV, KV Connect, one process's memory). A local
   * SQLite file shared by processes does not: main.ts turns it off there.
   * Default true.
   */
  watchKv?: boolean;
}

/** The instance's shared parts: what each service is built from, and more. */
export interface InstanceParts extends ServiceContext {
  log: (line: LogLine) => void;
  /** Heartbeat period for presence and slot renewal, in ms. */
  heartbeatMs: number;
  presence: Presence | undefined;
  teams: TeamServices;
  /** Writes this instance's heartbeat and counts the live ones (a failure logged while KV is up). */
  beat: () => Promise<void>;
}

/** The teams' registry and their day budgets. */
function teamServices(
  config: GatewayConfig,
  options: GatewayOptions,
  shared: { kv: Deno.Kv; clock: Clock; call: KvCallOptions; peers: () => number },
): TeamServices {
  const { kv, clock, call, peers } = shared;
  return {
    registry: new TeamRegistry(config.teams, {
      kv,
      clock,
      call,
      refreshMs: options.teamRefreshMs,
      context: { services: config.services, groups: config.groups.map((g) => g.name) },
      watch: options.watchKv,
    }),
    budgets: new DayBudgets({
      kv,
      clock,
      call,
      peers,
      dayStartMs: config.dayStartMs,
      usageKey: teamUsageKey,
    }),
  };
}

/** Makes the instance's shared parts; nothing here reads KV yet. */
export function instanceParts(config: GatewayConfig, options: GatewayOptions): InstanceParts {
  const { kv } = options;
  const clock = options.clock ?? systemClock;
  const log = options.log ?? jsonLog;
  const instanceId = options.instanceId ?? requestId();
  const logEvent = (event: string, detail: Record<string, unknown>) =>
    log({ t: isoTime(clock.now()), event, ...detail });
  const kvStatus = options.kvStatus ?? new KvStatus({
    clock,
    probe: () =>
      kvCall(() => kv.get(probeKey()), { timeoutMs: config.kvTimeoutMs, attempts: 1, clock }),
    log: logEvent,
  });
  const random = options.random ?? Math.random;
  const call = { timeoutMs: config.kvTimeoutMs, status: kvStatus, random, clock };
  const shared = config.limitMode === "shared";
  const heartbeatMs = options.heartbeatMs ?? Math.max(100, Math.floor(config.slotTtlMs / 3));
  const presence = shared
    ? new Presence(kv, instanceId, { clock, intervalMs: heartbeatMs, call, region: options.region })
    : undefined;
  // Before any instance was seen (KV down since start-up), the configured guess.
  const peers = () => presence?.peers ?? config.expectedInstances;
  const teams = teamServices(config, options, { kv, clock, call, peers });
  const beat = async () => {
    await presence?.beat().catch((e) => {
      if (kvStatus.up) logEvent("presence_failed", { error: String(e) });
    });
  };
  return {
    config,
    kv,
    clock,
    call,
    instanceId,
    random,
    shared,
    peers,
    kvStatus,
    healthStore: new KeyHealthStore(kv, { call }),
    rateStore: shared ? new KeyRateStore(kv, { call }) : undefined,
    logEvent,
    fetch: options.fetch ?? fetch,
    log,
    heartbeatMs,
    presence,
    teams,
    beat,
  };
}
