import type { GatewayConfig } from "../config/mod.ts";
import { KeyHealthStore, keyId, KeyPool, type PooledKey } from "../keys/mod.ts";
import {
  type CapacityStore,
  type Clock,
  DegradingStore,
  KvCapacityStore,
  MemoryCapacityStore,
  Presence,
  ServiceLimiter,
  systemClock,
} from "../limiter/mod.ts";
import { createHandler } from "./handler.ts";
import { isoTime, jsonLog, type LogLine } from "./log.ts";
import { requestId } from "./request_id.ts";
import { ServiceRuntime } from "./runtime.ts";

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
  /** This instance's id in KV. Default: a fresh ULID. */
  instanceId?: string;
  /** Random numbers for jitter. Default: `Math.random`. */
  random?: () => number;
  /** Heartbeat period for presence and slot renewal, in ms. Default: slotTtlMs / 3. */
  heartbeatMs?: number;
}

/** A running gateway: its request handler and its shutdown. */
export interface Gateway {
  readonly instanceId: string;
  readonly handler: (req: Request) => Promise<Response>;
  readonly runtimes: ReadonlyMap<string, ServiceRuntime>;
  readonly presence: Presence | undefined;
  /** Stops timers and hands back leased tokens and held slots. Idempotent. */
  close(): Promise<void>;
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
  const call = { timeoutMs: config.kvTimeoutMs };
  const shared = config.limitMode === "shared";
  const heartbeatMs = options.heartbeatMs ?? Math.max(100, Math.floor(config.slotTtlMs / 3));
  const presence = shared
    ? new Presence(kv, instanceId, { clock, intervalMs: heartbeatMs, call })
    : undefined;
  const peers = () => presence?.peers ?? 1;
  const healthStore = new KeyHealthStore(kv, { call });
  const logEvent = (event: string, detail: Record<string, unknown>) =>
    log({ t: isoTime(clock.now()), event, ...detail });

  if (presence) {
    await presence.beat().catch((e) => logEvent("presence_failed", { error: String(e) }));
  }

  const runtimes = new Map<string, ServiceRuntime>();
  for (const service of Object.values(config.services)) {
    const keys: PooledKey[] = [];
    for (const secret of service.keys) keys.push({ id: await keyId(secret), secret });
    const pool = new KeyPool(service.name, keys, {
      store: healthStore,
      keyDisableMs: config.keyDisableMs,
      log: logEvent,
    });
    const limits = { rps: service.rps, burst: service.burst, maxConn: service.maxConn };
    const store: CapacityStore = shared
      ? new DegradingStore(
        new KvCapacityStore(kv, service.name, limits, {
          instanceId,
          clock,
          slotTtlMs: config.slotTtlMs,
          call,
        }),
        limits,
        {
          clock,
          peers,
          log: (event, detail) => logEvent(event, { service: service.name, ...detail }),
        },
      )
      : new MemoryCapacityStore(limits, clock);
    const limiter = new ServiceLimiter(limits, {
      store,
      clock,
      queueLimit: config.queueLimit,
      leaseMs: config.leaseMs,
      slotTtlMs: config.slotTtlMs,
      peers,
    });
    const rt = new ServiceRuntime(
      service,
      pool,
      limiter,
      clock,
      (e) => logEvent("key_health_read_failed", { service: service.name, error: String(e) }),
    );
    if (keys.length > 0) await rt.fresh();
    runtimes.set(service.name, rt);
  }

  const timer = setInterval(() => {
    presence?.beat().catch((e) => logEvent("presence_failed", { error: String(e) }));
    for (const rt of runtimes.values()) rt.limiter.heartbeat();
  }, heartbeatMs);

  const handler = createHandler({
    config,
    runtimes,
    fetch: options.fetch ?? fetch,
    clock,
    log,
    random: options.random ?? Math.random,
  });

  let closing: Promise<void> | undefined;
  return {
    instanceId,
    handler,
    runtimes,
    presence,
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        await Promise.allSettled([...runtimes.values()].map((rt) => rt.limiter.close()));
        await Promise.allSettled([...runtimes.values()].map((rt) => rt.pool.settled()));
        await presence?.leave().catch(() => {});
      })();
      return closing;
    },
  };
}
