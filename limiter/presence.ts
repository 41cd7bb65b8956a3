import {
  instanceKey,
  instancePrefix,
  kvCall,
  type KvCallOptions,
  type KvList,
  type KvWrite,
} from "../kv/mod.ts";
import type { Clock } from "../lib/mod.ts";

/** The value of an instance heartbeat record. */
export interface InstanceRecord {
  seenAt: number;
  expiresAt: number;
  /** When the instance started (epoch ms). */
  startedAt?: number;
  /** Where it runs, when the platform says (`DENO_REGION` on Deploy). */
  region?: string;
}

/** Options for {@linkcode Presence}. */
export interface PresenceOptions {
  clock: Clock;
  /** Heartbeat period, in ms; a record counts for three periods. Default 5000. */
  intervalMs?: number;
  call?: KvCallOptions;
  /** Where the instance runs, written into its record. Default: not said. */
  region?: string;
}

/**
 * Tells roughly how many instances are live: each writes a heartbeat record
 * and counts the fresh ones. Used to size leases and degraded-mode shares.
 * The count is kept through a KV outage: the share of the limits an
 * instance takes while degraded is divided by the instances it last saw.
 */
export class Presence {
  #kv: KvWrite & KvList;
  #id: string;
  #clock: Clock;
  #interval: number;
  #call: KvCallOptions;
  #peers: number | undefined;
  #startedAt: number;
  #region: string | undefined;
  /** The beat under way, which leave() lets land before it deletes the record. */
  #beating: Promise<void> = Promise.resolve();
  #left = false;

  constructor(kv: KvWrite & KvList, instanceId: string, options: PresenceOptions) {
    this.#kv = kv;
    this.#id = instanceId;
    this.#clock = options.clock;
    this.#interval = options.intervalMs ?? 5000;
    this.#call = options.call ?? {};
    this.#startedAt = this.#clock.now();
    this.#region = options.region;
  }

  /**
   * Live instances at the last beat that reached KV, this one included (at
   * least 1); undefined until one has.
   */
  get peers(): number | undefined {
    return this.#peers;
  }

  /** Writes this instance's record and recounts the live ones; after leave(), nothing. */
  beat(): Promise<void> {
    if (this.#left) return Promise.resolve();
    const beat = this.#beat();
    this.#beating = beat.catch(() => {});
    return beat;
  }

  async #beat(): Promise<void> {
    const now = this.#clock.now();
    const record: InstanceRecord = {
      seenAt: now,
      expiresAt: now + 3 * this.#interval,
      startedAt: this.#startedAt,
    };
    if (this.#region !== undefined) record.region = this.#region;
    await kvCall(
      () => this.#kv.set(instanceKey(this.#id), record, { expireIn: 6 * this.#interval }),
      this.#call,
    );
    let live = 0;
    await kvCall(async () => {
      live = 0;
      for await (const e of this.#kv.list<InstanceRecord>({ prefix: instancePrefix() })) {
        if (e.value.expiresAt > now) live++;
      }
    }, this.#call);
    this.#peers = Math.max(1, live);
  }

  /** Every instance seen within the last `withinMs`, by id. */
  async list(withinMs: number): Promise<Array<InstanceRecord & { id: string }>> {
    const since = this.#clock.now() - withinMs;
    return await kvCall(async () => {
      const out: Array<InstanceRecord & { id: string }> = [];
      // For the status page: eventual, in-region.
      const all = this.#kv.list<InstanceRecord>({ prefix: instancePrefix() }, {
        consistency: "eventual",
      });
      for await (const e of all) {
        if (e.value.seenAt >= since) out.push({ id: String(e.key[1]), ...e.value });
      }
      return out;
    }, this.#call);
  }

  /**
   * Removes this instance's record (graceful shutdown), after a beat still
   * under way has landed: landing after the delete, it would count this
   * instance as live for three more periods.
   */
  async leave(): Promise<void> {
    this.#left = true;
    await this.#beating;
    await kvCall(() => this.#kv.delete(instanceKey(this.#id)), this.#call);
  }
}
