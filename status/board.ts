import type { Clock } from "../lib/mod.ts";
import type { KvStatus } from "../kv/mod.ts";
import type { DayBudgets, Presence, ScopeLimiter } from "../limiter/mod.ts";
import type { Service } from "../config/mod.ts";
import type { KeyPacing, KeyPool, ProviderBackoff } from "../keys/mod.ts";
import type { TeamRegistry } from "../teams/mod.ts";
import type { Gauge, Metrics } from "./metrics.ts";
import type { MinuteCount, MinuteCounts } from "./minute_counts.ts";
import type { GroupStatus, KeyStatus, StatusSnapshot } from "./snapshot.ts";

export type { GroupStatus, KeyStatus, StatusSnapshot };

/**
 * What the board reads of one service in this instance. Declared here, so
 * that the status sits below the gateway: the gateway's `ServiceRuntime`
 * is one.
 */
export interface BoardService {
  readonly service: Service;
  readonly pool: Pick<KeyPool, "keys" | "health">;
  readonly limiter: Pick<ScopeLimiter, "waiting" | "waitingByTeam" | "levels">;
  readonly pacing?: Pick<KeyPacing, "paceOf">;
  /** Each key's day: requests and tokens, KV's and this instance's. */
  readonly keyDays: Pick<DayBudgets, "usageOf">;
  readonly backoff?: Pick<ProviderBackoff, "pause">;
  /**
   * Has what other instances learned of the keys (health, the provider's
   * word, the pause) read again when it is getting old; a promise when it
   * is too old to show without waiting for the read.
   */
  fresh(now?: number): Promise<void> | undefined;
}

/**
 * What the board reads: this instance's parts, and through them KV for the
 * deployment's (the limiters' levels, the minute counts, presence, teams).
 */
export interface StatusBoardParts {
  clock: Clock;
  instanceId: string;
  runtimes: ReadonlyMap<string, BoardService>;
  metrics: Metrics;
  /** The deployment's answers per minute (the chart, the last five minutes). */
  minutes?: MinuteCounts;
  kvStatus: KvStatus;
  presence?: Presence;
  teams?: { registry: TeamRegistry; budgets: DayBudgets };
  /** Said on the status when KV is not what limits need (no database attached). */
  kvWarning?: string;
  /** The model groups and their targets' states now (see {@linkcode GroupStatus}). */
  groups?: (now: number) => GroupStatus[];
}

/** How old a snapshot may be before a request for it builds a new one, in ms. */
const SNAPSHOT_MS = 1000;

/**
 * The status of the whole deployment: built from KV (the ledgers, slot
 * records, instances, teams' usage) and this instance's view (key health
 * and pacing, at most a second old), at most once a second however often
 * it is asked; serving it never touches the request path.
 */
export class StatusBoard {
  #p: StatusBoardParts;
  #last: { at: number; snapshot: StatusSnapshot } | undefined;
  #building: Promise<StatusSnapshot> | undefined;

  constructor(parts: StatusBoardParts) {
    this.#p = parts;
  }

  /** The latest snapshot, at most a second old. */
  snapshot(): Promise<StatusSnapshot> {
    const now = this.#p.clock.now();
    if (this.#last && now - this.#last.at < SNAPSHOT_MS) {
      return Promise.resolve(this.#last.snapshot);
    }
    this.#building ??= this.#build(now).then((snapshot) => {
      this.#last = { at: now, snapshot };
      return snapshot;
    }).finally(() => this.#building = undefined);
    return this.#building;
  }

  /** The metrics of this instance and the deployment's gauges, in the Prometheus text format. */
  async metricsText(): Promise<string> {
    const s = await this.snapshot();
    const services = Object.entries(s.services);
    const states = ["active", "paced", "cooling", "disabled"] as const;
    const gauges: Gauge[] = [
      {
        name: "kvgate_keys",
        help:
          "Keys by state, per service (the deployment's key health, as this instance reads it).",
        series: services.flatMap(([service, v]) =>
          states.map((state) => ({
            labels: { service, state },
            value: v.keys.filter((k) => k.state === state).length,
          }))
        ),
      },
      {
        name: "kvgate_bucket_tokens",
        help: "Tokens free in the service's shared bucket (deployment, from KV).",
        series: services.filter(([, v]) => v.bucketTokens !== null)
          .map(([service, v]) => ({ labels: { service }, value: v.bucketTokens! })),
      },
      {
        name: "kvgate_in_flight",
        help: "In-flight slots held by all instances (deployment, from KV).",
        series: services.filter(([, v]) => v.inFlight !== null)
          .map(([service, v]) => ({ labels: { service }, value: v.inFlight! })),
      },
      {
        name: "kvgate_kv_degraded",
        help: "1 while this instance serves without KV (degraded mode).",
        series: [{ labels: {}, value: s.kvDegraded ? 1 : 0 }],
      },
    ];
    return this.#p.metrics.render(gauges);
  }

  async #build(now: number): Promise<StatusSnapshot> {
    const p = this.#p;
    // An instance that serves the page but not a service (the admin's, say) knows of its keys only
    // what it last read: every service's view is read again first when it is over a second old.
    await Promise.all([...p.runtimes.values()].map((rt) => rt.fresh(now)));
    const services: StatusSnapshot["services"] = {};
    for (const [name, rt] of p.runtimes) {
      const shared = p.kvStatus.up ? await rt.limiter.levels().catch(() => null) : null;
      const pause = rt.backoff?.pause;
      const minutes = p.kvStatus.up
        ? await p.minutes?.read(name, minuteOf(now) - 14 * 60_000, now + 1).catch(() => undefined)
        : undefined;
      services[name] = {
        limits: { rps: rt.service.rps, burst: rt.service.burst, maxConn: rt.service.maxConn },
        bucketTokens: shared?.bucketTokens ?? null,
        inFlight: shared?.inFlight ?? null,
        queuedHere: rt.limiter.waiting,
        queuedByTeam: rt.limiter.waitingByTeam(),
        keyQuota: { ...rt.service.keyQuota },
        backoff: pause && pause.until > now
          ? {
            until: pause.admin ? "resumed by an admin" : iso(pause.until),
            reason: pause.reason,
            strikes: pause.strikes,
          }
          : null,
        keys: await this.#keys(rt, now),
        lastFiveMinutes: minutes ? lastFive(minutes, now) : null,
        perMinute: (minutes ?? []).map((m) => ({ ...m, at: iso(m.minute) })),
      };
    }
    return {
      at: iso(now),
      instance: p.instanceId,
      kvDegraded: !p.kvStatus.up,
      kvWarning: p.kvWarning,
      services,
      teams: await this.#teams(),
      groups: p.groups?.(now) ?? [],
      instances: await this.#instances(now),
    };
  }

  /**
   * Instances seen in the last minute. One whose heartbeat is older than
   * three beats is `degraded` (it cannot reach KV) or gone; this instance
   * says for itself.
   */
  async #instances(now: number): Promise<unknown[]> {
    const p = this.#p;
    const list = await (p.presence?.list(60_000).catch(() => []) ?? []);
    return list.map((i) => ({
      ...i,
      degraded: i.id === p.instanceId ? !p.kvStatus.up : now - i.seenAt > this.#staleMs(i),
    }));
  }

  #staleMs(i: { seenAt: number; expiresAt: number }): number {
    return i.expiresAt - i.seenAt;
  }

  async #keys(rt: BoardService, now: number): Promise<KeyStatus[]> {
    const ids = rt.pool.keys.map((k) => k.id);
    const todays = this.#p.kvStatus.up
      ? await rt.keyDays.usageOf(ids).catch(() => undefined)
      : undefined;
    return rt.pool.keys.map((key, i) => {
      const h = rt.pool.health(key.id);
      const pace = rt.pacing?.paceOf(key.id);
      const out: KeyStatus = {
        id: key.id,
        state: "active",
        answers: this.#p.metrics.answersOf(rt.service.name, key.id),
      };
      const last = this.#p.metrics.lastStatus.get(key.id);
      if (last !== undefined) out.lastStatus = last;
      if (h && h.until > now) {
        out.state = h.state;
        out.until = iso(h.until);
        out.reason = h.reason;
        if (h.setAt !== undefined) out.since = iso(h.setAt);
      } else if (pace?.rpm !== undefined || pace?.tpm !== undefined) {
        out.state = "paced";
      }
      if (pace?.rpm !== undefined || pace?.tpm !== undefined) {
        out.paced = { rpm: pace.rpm, tpm: pace.tpm };
      }
      if (pace?.rate) out.provider = pace.rate;
      const q = rt.service.keyQuota;
      const today = todays?.[i];
      if (today) {
        out.today = today;
        if (q.rpd !== undefined) out.today.rpd = q.rpd;
        if (q.tpm !== undefined) out.today.tpm = q.tpm;
      }
      return out;
    });
  }

  /** Teams: budgets and use today (KV), requests waiting here and 429s answered here. */
  async #teams(): Promise<unknown[]> {
    const teams = this.#p.teams;
    if (!teams) return [];
    const waiting: Record<string, number> = {};
    for (const rt of this.#p.runtimes.values()) {
      for (const [team, n] of Object.entries(rt.limiter.waitingByTeam())) {
        waiting[team] = (waiting[team] ?? 0) + n;
      }
    }
    await teams.registry.fresh();
    const list = teams.registry.list();
    const usage = await teams.budgets.usageOf(list.map((t) => t.name)).catch(() => undefined);
    return list.map((t, i) => ({
      name: t.name,
      weight: t.weight,
      daily: t.daily,
      usageToday: usage?.[i] ?? null,
      waitingHere: waiting[t.name] ?? 0,
      refusedHere: this.#p.metrics.requests.sumWhere(1, t.name, 2, "429"),
    }));
  }
}

function minuteOf(ms: number): number {
  return ms - (ms % 60_000);
}

/** The sums of the last five minutes (the current one included). */
function lastFive(minutes: MinuteCount[], now: number): Omit<MinuteCount, "minute"> {
  const from = minuteOf(now) - 4 * 60_000;
  const out = { requests: 0, refused: 0, errors: 0, upstream429: 0 };
  for (const m of minutes) {
    if (m.minute < from) continue;
    out.requests += m.requests;
    out.refused += m.refused;
    out.errors += m.errors;
    out.upstream429 += m.upstream429;
  }
  return out;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
