import type { GatewayConfig } from "../config/mod.ts";
import type { KvStatus } from "../kv/mod.ts";
import type { Presence } from "../limiter/mod.ts";
import { GenAiTelemetry, Metrics, MinuteCounts, StatusBoard } from "../status/mod.ts";
import { backgroundParts } from "./background.ts";
import { Drain, type DrainReport } from "./drain.ts";
import { groupStatus, servedGroups } from "./stages/group_serve.ts";
import { createHandler } from "./handler.ts";
import { type GatewayOptions, type InstanceParts, instanceParts } from "./instance_parts.ts";
import { Lifecycle } from "./lifecycle.ts";
import type { ServiceRuntime } from "./runtime.ts";
import { buildServiceRuntime } from "./service_build.ts";
import { gatewayEnd } from "./shutdown.ts";

export type { GatewayOptions } from "./instance_parts.ts";
export { shutdownShares } from "./shutdown.ts";

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

/** Each service's runtime, its keys' health read in parallel (a round trip in all). */
async function serviceRuntimes(
  config: GatewayConfig,
  parts: InstanceParts,
): Promise<Map<string, ServiceRuntime>> {
  const built = await Promise.all(
    Object.values(config.services).map((service) => buildServiceRuntime(service, parts)),
  );
  return new Map<string, ServiceRuntime>(built.map((rt) => [rt.service.name, rt]));
}

/** Starts the background work, which sleeps after idleAfterMs without a request (lifecycle.ts). */
function startBackground(
  parts: InstanceParts,
  runtimes: Map<string, ServiceRuntime>,
  minutes: MinuteCounts,
  drain: Drain,
  watch: boolean,
): Lifecycle {
  const lifecycle = new Lifecycle({
    clock: parts.clock,
    idleMs: parts.config.idleAfterMs,
    busy: () => drain.inFlight > 0,
    log: parts.logEvent,
  });
  const { registry, budgets } = parts.teams;
  for (const part of backgroundParts({ ...parts, runtimes, registry, budgets, minutes, watch })) {
    lifecycle.add(part);
  }
  lifecycle.start();
  // Back from an outage: count the instances again, write what was kept in memory.
  parts.kvStatus.onRecovered(() => lifecycle.rejoin());
  return lifecycle;
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
  const parts = instanceParts(config, options);
  const { clock, kvStatus, presence, teams } = parts;
  await teams.registry.start();
  await parts.beat();
  const runtimes = await serviceRuntimes(config, parts);

  const drain = new Drain(clock);
  const metrics = new Metrics();
  const minutes = new MinuteCounts({
    kv: parts.kv,
    clock,
    call: parts.call,
    flushMs: options.minuteFlushMs,
    random: parts.random,
  });
  for (const rt of runtimes.values()) if (!rt.keyDays.timed) minutes.join(rt.keyDays);
  const lifecycle = startBackground(parts, runtimes, minutes, drain, options.watchKv !== false);
  const status = new StatusBoard({
    ...parts,
    runtimes,
    metrics,
    minutes,
    kvWarning: options.kvWarning,
    groups: groupStatus(servedGroups(config.groups, runtimes)),
  });
  const handler = createHandler({
    config,
    clock,
    log: parts.log,
    fetch: parts.fetch,
    random: parts.random,
    teams,
    metrics,
    minutes,
    telemetry: new GenAiTelemetry(config.otel),
    status,
    runtimes,
    drain,
    lifecycle,
  });
  const end = gatewayEnd({
    ...parts,
    drain,
    lifecycle,
    ownsKvStatus: options.kvStatus === undefined,
  });
  return { instanceId: parts.instanceId, handler, runtimes, presence, kvStatus, status, ...end };
}
