/**
 * Key health on its way to KV, written behind: each rest (or end of one)
 * is written as it is decided; one that fails is kept, unless a later one
 * for the same key has been made since, and written again by
 * {@linkcode HealthWriter.writeBack} once KV answers, so that what was
 * learned while KV was down reaches every instance and survives a restart.
 *
 * @module
 */
import type { KeyHealth, KeyHealthStore } from "./health_store.ts";

/** The health writes of one service's keys (see the module doc). */
export class HealthWriter {
  #store: KeyHealthStore;
  #service: string;
  #log: ((event: string, detail: Record<string, unknown>) => void) | undefined;
  #pending = new Set<Promise<unknown>>();
  /** Rests (or ends of rests: null) that could not be written, by key id. */
  #unwritten = new Map<string, KeyHealth | null>();
  /** The latest write per key id: a failed write is kept only if no later one was made. */
  #writes = new Map<string, number>();
  #writeSeq = 0;

  constructor(
    store: KeyHealthStore,
    service: string,
    log?: (event: string, detail: Record<string, unknown>) => void,
  ) {
    this.#store = store;
    this.#service = service;
    this.#log = log;
  }

  /** Writes a key's rest (null: its end) now, keeping it for writeBack() if the write fails. */
  write(id: string, health: KeyHealth | null, now: number): void {
    this.#unwritten.delete(id);
    const seq = ++this.#writeSeq;
    this.#writes.set(id, seq);
    const write = health === null
      ? this.#store.clear(this.#service, id)
      : this.#store.mark(this.#service, id, health, now);
    this.track(
      write.catch((e) => {
        // Kept for writeBack(), unless a later report has been written since.
        if (this.#writes.get(id) === seq) this.#unwritten.set(id, health);
        throw e;
      }).finally(() => {
        if (this.#writes.get(id) === seq) this.#writes.delete(id);
      }),
    );
  }

  /** Whether a key's latest word is not in KV yet: its write is under way, or failed and kept. */
  holds(id: string): boolean {
    return this.#writes.has(id) || this.#unwritten.has(id);
  }

  /**
   * Writes the rests that could not be written while KV was down (those
   * still running; a rest that has ended meanwhile needs no record).
   */
  writeBack(now: number): void {
    const unwritten = [...this.#unwritten];
    this.#unwritten.clear();
    for (const [id, health] of unwritten) {
      if (health === null || health.until > now) this.write(id, health, now);
    }
  }

  /** Counts `p` among the writes settled() waits for; its failure is logged. */
  track(p: Promise<unknown>): void {
    const tracked = p.catch((e) => this.#log?.("key_health_write_failed", { error: String(e) }));
    this.#pending.add(tracked);
    tracked.finally(() => this.#pending.delete(tracked));
  }

  /** Resolves when every write so far has reached KV (or failed). */
  async settled(): Promise<void> {
    // A probe's verdict starts a write of its own: wait for that too.
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }
}
