import type { Clock } from "../lib/mod.ts";
import {
  kvCall,
  type KvCallOptions,
  type KvList,
  type KvWrite,
  shareDemandKey,
  shareDemandPrefix,
} from "../kv/mod.ts";
import type { TeamDemand } from "./fair_share.ts";

/** One instance's demand on a service, by team. */
export type InstanceDemand = Record<string, TeamDemand>;

/**
 * Where instances tell each other their demand on a service, so that they
 * agree on each team's share. `exchange` publishes this instance's demand
 * and returns every live instance's (its own included).
 */
export interface DemandBoard {
  exchange(mine: InstanceDemand): Promise<InstanceDemand[]>;
}

/** A board for one instance alone (limits kept per instance). */
export class LocalDemandBoard implements DemandBoard {
  exchange(mine: InstanceDemand): Promise<InstanceDemand[]> {
    return Promise.resolve([mine]);
  }
}

/**
 * A record unchanged (each demand within 10%, the same teams) is written again
 * only after this long, well inside the readers' `staleMs`: fewer writes
 * leave the KV file's lock to the leases that need it.
 */
const REWRITE_MS = 1000;

/** True when `next` differs from `last` by a new or gone team, a weight, or a demand off by 10%. */
function changed(last: InstanceDemand | undefined, next: InstanceDemand): boolean {
  if (last === undefined) return true;
  const names = Object.keys(next);
  if (names.length !== Object.keys(last).length) return true;
  for (const name of names) {
    const a = last[name], b = next[name];
    if (a === undefined || a.weight !== b.weight) return true;
    if (Math.abs(a.demand - b.demand) > 0.1 * Math.max(a.demand, b.demand)) return true;
  }
  return false;
}

interface DemandRecord {
  at: number;
  teams: InstanceDemand;
}

/** Options for {@linkcode KvDemandBoard}. */
export interface KvDemandBoardOptions {
  instanceId: string;
  clock: Clock;
  call?: KvCallOptions;
  /** A record older than this is an instance that stopped telling, in ms. Default 2000. */
  staleMs?: number;
}

/**
 * The board in Deno KV: one record per instance and service, written by
 * its instance only (no contention), expiring by itself; a read lists the
 * service's records. An instance with no demand deletes its record.
 */
export class KvDemandBoard implements DemandBoard {
  #kv: KvWrite & KvList;
  #service: string;
  #options: KvDemandBoardOptions;
  #published = false;
  /** What was last written, and when: a record that would barely change is not written again. */
  #last: InstanceDemand | undefined;
  #lastAt = 0;

  constructor(kv: KvWrite & KvList, service: string, options: KvDemandBoardOptions) {
    this.#kv = kv;
    this.#service = service;
    this.#options = options;
  }

  async exchange(mine: InstanceDemand): Promise<InstanceDemand[]> {
    const { clock, instanceId, call = {}, staleMs = 2000 } = this.#options;
    const key = shareDemandKey(this.#service, instanceId);
    const empty = Object.keys(mine).length === 0;
    const now0 = clock.now();
    if (!empty && (now0 - this.#lastAt >= REWRITE_MS || changed(this.#last, mine))) {
      const record: DemandRecord = { at: now0, teams: mine };
      await kvCall(() => this.#kv.set(key, record, { expireIn: 10_000 }), call);
      this.#published = true;
      this.#last = mine;
      this.#lastAt = now0;
    } else if (empty && this.#published) {
      await kvCall(() => this.#kv.delete(key), call);
      this.#published = false;
      this.#last = undefined;
    }
    const now = clock.now();
    const out: InstanceDemand[] = [];
    await kvCall(async () => {
      out.length = 0;
      const list = this.#kv.list<DemandRecord>({ prefix: shareDemandPrefix(this.#service) });
      for await (const e of list) {
        if (e.key[2] === instanceId) continue;
        if (now - e.value.at <= staleMs) out.push(e.value.teams);
      }
    }, call);
    if (!empty) out.push(mine);
    return out;
  }
}
