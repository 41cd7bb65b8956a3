/**
 * One service's runtime, built from the gateway's shared parts: its key
 * pool, its limiter (shared through KV, or per instance in local mode), the
 * teams' fair gate and own limiters, its keys' pacing and its provider-wide
 * pause.
 *
 * @module
 */
import type { GatewayConfig, Service } from "../config/mod.ts";
import {
  type KeyHealthStore,
  keyId,
  KeyPacing,
  KeyPool,
  type KeyRateStore,
  nextDayReset,
  type PooledKey,
  ProviderBackoff,
} from "../keys/mod.ts";
import { keyDayUsageKey, type KvCallOptions, type KvStatus, type LimitScope } from "../kv/mod.ts";
import {
  type CapacityStore,
  type Clock,
  DayBudgets,
  DegradingStore,
  FairQueue,
  KvCapacityStore,
  MemoryCapacityStore,
  ScopeLimiter,
} from "../limiter/mod.ts";
import { ServiceRuntime } from "./runtime.ts";
import { keyProber } from "./key_probe.ts";
import {
  FairGate,
  KvDemandBoard,
  LocalDemandBoard,
  TeamLimiters,
  type TeamLimits,
} from "../teams/mod.ts";

/** What every service's runtime is built from: the gateway's shared parts. */
export interface ServiceContext {
  config: GatewayConfig;
  kv: Deno.Kv;
  clock: Clock;
  call: KvCallOptions;
  instanceId: string;
  random: () => number;
  /** `limitMode` is "shared": limits hold for the deployment through KV. */
  shared: boolean;
  /** Live instances (or the configured guess before any was seen). */
  peers: () => number;
  kvStatus: KvStatus;
  healthStore: KeyHealthStore;
  rateStore: KeyRateStore | undefined;
  logEvent: (event: string, detail: Record<string, unknown>) => void;
  /** Calls upstreams (the probes of suspect keys). */
  fetch: typeof fetch;
}

/** Builds `service`'s runtime and reads its keys' health once. */
export async function buildServiceRuntime(
  service: Service,
  c: ServiceContext,
): Promise<ServiceRuntime> {
  const keys: PooledKey[] = [];
  for (const secret of service.keys) keys.push({ id: await keyId(secret), secret });
  const pool = new KeyPool(service.name, keys, {
    store: c.healthStore,
    keyDisableMs: c.config.keyDisableMs,
    log: c.logEvent,
    dayResetAfter: (now) => nextDayReset(now, service.dayResetMs),
    probe: keyProber(service, c.fetch, c.clock),
    clock: c.clock,
  });
  const limits = { rps: service.rps, burst: service.burst, maxConn: service.maxConn };
  const gate = fairGate(service, limits, c);
  let stores = 0;
  const storeFor = (scope: LimitScope, l: TeamLimits) => capacityStore(scope, l, c, stores++);
  const limiterFor = (scope: LimitScope, l: TeamLimits, leasePeers = c.peers) =>
    new ScopeLimiter(l, {
      store: storeFor(scope, l),
      clock: c.clock,
      queueLimit: c.config.queueLimit,
      leaseMs: c.config.leaseMs,
      slotTtlMs: c.config.slotTtlMs,
      peers: leasePeers,
      random: c.random,
      // Teams take turns by weight, interactive before bulk (only while requests wait).
      slotQueue: new FairQueue(),
      tokenQueue: new FairQueue(),
    });
  // Each key's requests and tokens on the provider's day (the status); with `rpd`, its budget too.
  const keyDays = new DayBudgets({
    kv: c.kv,
    clock: c.clock,
    call: c.call,
    peers: c.peers,
    dayStartMs: service.dayResetMs,
    // Counts alone go to KV in the minute counts' commit; an `rpd` is read back each second.
    timer: service.keyQuota.rpd !== undefined,
    usageKey: (key, day, what) => keyDayUsageKey(service.name, key, day, what),
  });
  const pacing = keyPacing(service, pool, limiterFor, storeFor, keyDays, c);
  const rt = new ServiceRuntime({
    service,
    pool,
    // Leases sized to this instance's fair share while teams are held back.
    limiter: limiterFor(service.name, limits, () => gate.instancesWorth() ?? c.peers()),
    clock: c.clock,
    onError: (e) =>
      c.logEvent("key_health_read_failed", { service: service.name, error: String(e) }),
    status: c.kvStatus,
    gate,
    teams: new TeamLimiters(
      service.name,
      limits,
      (team, l) => limiterFor({ service: service.name, team }, l),
    ),
    pacing,
    keyDays,
    backoff: new ProviderBackoff({
      service: service.name,
      keys: keys.length,
      clock: c.clock,
      kv: c.shared ? c.kv : undefined,
      call: c.call,
      instanceId: c.instanceId,
      log: c.logEvent,
    }),
  });
  if (keys.length > 0) await rt.fresh();
  return rt;
}

/** Each key's pacing: its quota, the provider's word on it, its day count (`rpd`). */
function keyPacing(
  service: Service,
  pool: KeyPool,
  limiterFor: (scope: LimitScope, l: TeamLimits) => ScopeLimiter,
  storeFor: (scope: LimitScope, l: TeamLimits) => CapacityStore,
  keyDays: DayBudgets,
  c: ServiceContext,
): KeyPacing {
  return new KeyPacing({
    service: service.name,
    quota: service.keyQuota,
    dialect: service.rateLimitHeaders,
    dayResetMs: service.dayResetMs,
    clock: c.clock,
    leaseMs: c.config.leaseMs,
    requestLimiter: (key, l) => limiterFor({ service: service.name, key, per: "requests" }, l),
    tokenStore: (key, l) => storeFor({ service: service.name, key, per: "tokens" }, l),
    days: keyDays,
    rates: c.rateStore,
    rest: (key, until, reason) => pool.rest(key, until, reason, c.clock.now()),
    log: c.logEvent,
  });
}

/** The teams' fair share of the service, agreed with other instances through KV when shared. */
function fairGate(service: Service, limits: TeamLimits, c: ServiceContext): FairGate {
  const board = c.shared
    ? new KvDemandBoard(c.kv, service.name, {
      instanceId: c.instanceId,
      clock: c.clock,
      call: c.call,
    })
    : new LocalDemandBoard();
  return new FairGate({
    rate: limits.rps,
    burst: limits.burst,
    board,
    clock: c.clock,
    queueLimit: c.config.queueLimit,
    onError: (e) => {
      if (c.kvStatus.up) {
        c.logEvent("share_exchange_failed", { service: service.name, error: String(e) });
      }
    },
  });
}

/**
 * Where one scope's capacity lives: KV (falling back to a local share while
 * KV is down), or memory. The `n`th store of the service files its slot
 * claim under a name of its own: a team's limits changed by the admin API
 * get a new limiter on the same scope while the old one's requests are
 * still in flight, and two claims under one name would overwrite each
 * other (the new one taking the old one's slots as its own).
 */
function capacityStore(
  scope: LimitScope,
  l: TeamLimits,
  c: ServiceContext,
  n: number,
): CapacityStore {
  if (!c.shared) return new MemoryCapacityStore(l, c.clock);
  return new DegradingStore(
    new KvCapacityStore(c.kv, scope, l, {
      instanceId: `${c.instanceId}.${n}`,
      clock: c.clock,
      slotTtlMs: c.config.slotTtlMs,
      call: c.call,
      random: c.random,
    }),
    l,
    { clock: c.clock, peers: c.peers, status: c.kvStatus },
  );
}
