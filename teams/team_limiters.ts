import type { ScopeLimiter } from "../limiter/mod.ts";
import { type Team, type TeamLimits, teamLimitsFor } from "./team.ts";

/**
 * The limiters of teams' own pacing on one service, made when a team first
 * sends there, and made again when its limits change (admin API). Each is
 * a full service limiter over its own shared store, so a team's limits
 * hold across instances as a service's do, and lease the same way.
 */
export class TeamLimiters {
  #made = new Map<string, { team: Team; signature: string; limiter: ScopeLimiter }>();
  #make: (team: string, limits: TeamLimits) => ScopeLimiter;
  #cap: TeamLimits;
  #service: string;
  /** Limiters of teams with no pacing of their own: only their slots count. */
  #slotsOnly = new WeakSet<ScopeLimiter>();

  /**
   * @param service The service's name.
   * @param cap The service's own limits: no team's exceed them.
   * @param make Builds the limiter of one team.
   */
  constructor(
    service: string,
    cap: TeamLimits,
    make: (team: string, limits: TeamLimits) => ScopeLimiter,
  ) {
    this.#service = service;
    this.#cap = cap;
    this.#make = make;
  }

  /**
   * The limiter of `team`'s own pacing here, or undefined when it has none.
   * A team with no limits of its own here still has a cap on what it holds
   * in flight (see {@linkcode defaultTeamLimits}), unless `capped` is false
   * (the password's requests).
   */
  for(team: Team, capped = true): ScopeLimiter | undefined {
    const made = this.#made.get(team.name);
    // Called on every request of a team with limits: the same team record, the same limiter.
    if (made?.team === team) return made.limiter;
    const limits = teamLimitsFor(team, this.#service, this.#cap) ??
      (capped ? defaultTeamLimits(this.#cap) : undefined);
    if (limits === undefined) {
      if (made) this.#retire(team.name, made.limiter);
      return undefined;
    }
    const signature = `${limits.rps}/${limits.burst}/${limits.maxConn}`;
    if (made?.signature === signature) {
      made.team = team;
      return made.limiter;
    }
    if (made) this.#retire(team.name, made.limiter);
    const limiter = this.#make(team.name, limits);
    if (limits.rps >= this.#cap.rps && limits.burst >= this.#cap.burst) {
      this.#slotsOnly.add(limiter);
    }
    this.#made.set(team.name, { team, signature, limiter });
    return limiter;
  }

  /** Whether `limiter` paces a team's tokens (its own rps or burst), not only its slots. */
  pacesTokens(limiter: ScopeLimiter): boolean {
    return !this.#slotsOnly.has(limiter);
  }

  /** Renews the slots every team limiter holds. */
  heartbeat(): void {
    for (const { limiter } of this.#made.values()) limiter.heartbeat();
  }

  /** Closes every team limiter. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#made.values()].map(({ limiter }) => limiter.close()));
  }

  /** Resolves once every team limiter's last writes have landed. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#made.values()].map(({ limiter }) => limiter.settled()));
  }

  #retire(name: string, limiter: ScopeLimiter): void {
    this.#made.delete(name);
    limiter.close().catch(() => {});
  }
}

/**
 * What a team with no limits of its own holds at most on a service: one
 * slot fewer than the service's `maxConn`, so that no team's requests
 * (streams relayed natively, which nothing can time out, included) ever
 * take every slot from the others. A service with `maxConn` 1 has no room
 * for such a cap: undefined.
 */
export function defaultTeamLimits(service: TeamLimits): TeamLimits | undefined {
  if (service.maxConn < 2) return undefined;
  return { rps: service.rps, burst: service.burst, maxConn: service.maxConn - 1 };
}
