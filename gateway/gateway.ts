import type { GatewayConfig } from "../config/mod.ts";
import { KeyHealthStore, KeyRateStore } from "../keys/mod.ts";
import { kvCall, KvStatus, probeKey, teamUsageKey } from "../kv/mod.ts";
import { type Clock, DayBudgets, Presence, systemClock } from "../limiter/mod.ts";
import { buildServiceRuntime, type ServiceContext } from "./service_build.ts";
import { Drain, type DrainReport } from "./drain.ts";
import { groupStatus, servedGroups } from "./group_serve.ts";
import { backgroundParts } from "./background.ts";
import { Lifecycle } from "./lifecycle.ts";
import { createHandler } from "./handler.ts";
import { isoTime, jsonLog, type LogLine } from "./log.ts";
import { requestId } from "./request_id.ts";
import type { ServiceRuntime } from "./runtime.ts";
import { TeamRegistry } from "../teams/mod.ts";
import type { TeamServices } from "./pipeline.ts";
import { GenAiTelemetry, Metrics, MinuteCounts, StatusBoard } from "../status/mod.ts";

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
  /** How often teams made through the admin API are read again, in ms. Default 2000. */
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

/** A running gateway: its request handler and its shutdown. */
export interface Gateway {
  readonly instanceId: string;
  readonly handler: (req: Request, info?: Deno.ServeHandlerInfo) => Promise<Response>;
  readonly runtimes: ReadonlyMap<string, ServiceRuntime>;
  readonly presence: Presence | undefined;
  readonly kvStatus: KvStatus;
  /** The deployment's status and this instance's metrics. */
  readonly status: StatusBoard;
  /** Stops timers and hands back leased tokens and held slots. Idempotent. */
  close(): Promise<void>;
  /**
   * Shuts down gracefully within `budgetMs` (default: the config's
   * `shutdownMs`): refuses new requests (503 `gateway_closing`) and queued
   * ones, hands back unused tokens and idle slots while responses in flight
   * run (for up to `drainMs`, less when KV is slow), then ends the streams
   * still open at an event boundary, and resolves once every slot has been
   * handed back, or when the budget is spent.
   */
  drain(budgetMs?: number): Promise<DrainReport>;
}

/**
 * Builds a gateway from validated configuration: a key pool and a limiter
 * per service (shared through KV, or per instance when `limitMode` is
 * "local"), key health loaded from KV so a restart remembers disabled keys.
 */
export async function createGateway(
  config: GatewayConfig,
  options: GatewayOptions,
): Promise<Gateway> {
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
    ? new Presence(kv, instanceId, {
      clock,
      intervalMs: heartbeatMs,
      call,
      region: options.region,
    })
    : undefined;
  // Before any instance was seen (KV down since start-up), the configured guess.
  const peers = () => presence?.peers ?? config.expectedInstances;
  const healthStore = new KeyHealthStore(kv, { call });
  const rateStore = shared ? new KeyRateStore(kv, { call }) : undefined;
  const teams: TeamServices = {
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
  await teams.registry.start();
  const beat = () =>
    presence?.beat().catch((e) => {
      if (kvStatus.up) logEvent("presence_failed", { error: String(e) });
    });
  await beat();

  const context: ServiceContext = {
    config,
    kv,
    clock,
    call,
    instanceId,
    random,
    shared,
    peers,
    kvStatus,
    healthStore,
    rateStore,
    logEvent,
    fetch: options.fetch ?? fetch,
  };
  // Each service reads its keys' health: in parallel, a round trip in all.
  const runtimes = new Map<string, ServiceRuntime>();
  const built = await Promise.all(
    Object.values(config.services).map((service) => buildServiceRuntime(service, context)),
  );
  for (const rt of built) runtimes.set(rt.service.name, rt);

  // Back from an outage: count the instances again, write what was kept in memory.
  kvStatus.onRecovered(() => {
    beat();
    teams.budgets.flush().catch(() => {});
    for (const rt of runtimes.values()) rt.rejoin();
  });

  const drain = new Drain(clock);
  const metrics = new Metrics();
  const minutes = new MinuteCounts({ kv, clock, call, flushMs: options.minuteFlushMs });
  // The background work sleeps after idleAfterMs without a request (lifecycle.ts).
  const lifecycle = new Lifecycle({
    clock,
    idleMs: config.idleAfterMs,
    busy: () => drain.inFlight > 0,
    log: logEvent,
  });
  const parts = {
    clock,
    heartbeatMs,
    beat,
    runtimes,
    registry: teams.registry,
    minutes,
    kvStatus,
    kv,
    watch: options.watchKv !== false,
  };
  for (const part of backgroundParts(parts)) lifecycle.add(part);
  lifecycle.start();
  const status = new StatusBoard({
    minutes,
    clock,
    instanceId,
    runtimes,
    metrics,
    kvStatus,
    presence,
    teams,
    kvWarning: options.kvWarning,
    groups: groupStatus(servedGroups(config.groups, runtimes)),
  });
  const handler = createHandler({
    metrics,
    minutes,
    telemetry: new GenAiTelemetry(config.otel),
    status,
    config,
    runtimes,
    fetch: options.fetch ?? fetch,
    clock,
    log,
    random,
    drain,
    teams,
    lifecycle,
  });

  let closing: Promise<void> | undefined;
  let draining: Promise<DrainReport> | undefined;
  const gateway: Gateway = {
    instanceId,
    handler,
    runtimes,
    presence,
    kvStatus,
    status,
    drain(budgetMs = config.shutdownMs) {
      draining ??= (async () => {
        const deadline = clock.now() + budgetMs;
        drain.start();
        // The hand-backs and KV writes run while the answers in flight do.
        const closed = gateway.close();
        const { drainMs, graceMs } = shutdownShares(budgetMs, config.drainMs, kvStatus.latencyMs);
        const report = await drain.run(drainMs, graceMs);
        // The slots of the last responses go back after every earlier write.
        const written = (async () => {
          await closed;
          await Promise.allSettled([...runtimes.values()].map((rt) => rt.limiter.settled()));
          await Promise.allSettled([...runtimes.values()].map((rt) => rt.teams?.settled()));
          await Promise.allSettled([...runtimes.values()].map((rt) => rt.pool.settled()));
          await teams.budgets.close();
        })();
        await untilOrDeadline(written, clock, deadline);
        return report;
      })();
      return draining;
    },
    close() {
      closing ??= (async () => {
        await lifecycle.close();
        teams.registry.close();
        for (const rt of runtimes.values()) rt.gate?.close();
        await Promise.allSettled([...runtimes.values()].map((rt) => rt.limiter.close()));
        await Promise.allSettled([...runtimes.values()].map((rt) => rt.teams?.close()));
        await Promise.allSettled([...runtimes.values()].map((rt) => rt.pacing?.close()));
        await teams.budgets.close();
        await Promise.allSettled([...runtimes.values()].map((rt) => rt.pool.settled()));
        await presence?.leave().catch(() => {});
        if (options.kvStatus === undefined) kvStatus.close();
      })();
      return closing;
    },
  };
  return gateway;
}

/**
 * How a shutdown budget is shared: time kept for the last writes (three KV
 * round trips at the latency seen lately, 250 ms at least, 1.5 s at most),
 * the grace for streams to reach an event boundary (500 ms, less when the
 * budget is short), and the rest, up to `drainMs`, for answers in flight.
 */
export function shutdownShares(
  budgetMs: number,
  drainMs: number,
  kvLatencyMs: number,
): { drainMs: number; graceMs: number } {
  const writes = Math.min(1500, Math.max(250, 3 * kvLatencyMs));
  const graceMs = Math.max(0, Math.min(500, (budgetMs - writes) / 4));
  return { drainMs: Math.max(0, Math.min(drainMs, budgetMs - writes - graceMs)), graceMs };
}

/** Resolves when `work` does, or at `deadline` on `clock`, whichever comes first. */
function untilOrDeadline(work: Promise<unknown>, clock: Clock, deadline: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = clock.setTimeout(resolve, Math.max(0, deadline - clock.now()));
    work.finally(() => {
      clock.clearTimeout(timer);
      resolve();
    });
  });
}
