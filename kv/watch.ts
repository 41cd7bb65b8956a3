/**
 * One `kv.watch` kept open: it tells when any of its keys' records changes
 * (its first emission is the records as they are), says whether it is live,
 * and starts again a while after the stream fails (KV down, the stream
 * broken). Used where the keys another instance may write are known in
 * advance, so that a change is heard instead of read on a timer.
 *
 * @module
 */
import type { KvWatchPort } from "./ports.ts";
import type { Clock, TimerHandle } from "../lib/mod.ts";

/** Deno KV watches at most this many keys per call. */
export const KEYS_PER_WATCH = 10;
/** After a watch fails, the next try waits this long, in ms. */
const RETRY_MS = 5000;

/** What a {@linkcode KeyWatch} tells. */
export interface KeyWatchHandlers {
  /** A record changed, or (`first`) the watch has just started: read them all. */
  changed(first: boolean): void;
  /** The watch became live, or stopped being so. */
  live(on: boolean): void;
}

/** A watch on up to {@linkcode KEYS_PER_WATCH} keys, started and stopped with its owner. */
export class KeyWatch {
  #kv: KvWatchPort;
  #keys: Deno.KvKey[];
  #clock: Clock;
  #on: KeyWatchHandlers;
  #running = false;
  /** Each start is a new generation: a stream of an earlier one that ends late changes nothing. */
  #generation = 0;
  #reader: ReadableStreamDefaultReader<unknown> | undefined;
  #retry: TimerHandle | undefined;

  constructor(kv: KvWatchPort, keys: Deno.KvKey[], clock: Clock, on: KeyWatchHandlers) {
    if (keys.length === 0 || keys.length > KEYS_PER_WATCH) {
      throw new RangeError(`a watch takes 1 to ${KEYS_PER_WATCH} keys (got ${keys.length})`);
    }
    this.#kv = kv;
    this.#keys = keys;
    this.#clock = clock;
    this.#on = on;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#generation++;
    this.#run();
  }

  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    this.#generation++;
    if (this.#retry !== undefined) this.#clock.clearTimeout(this.#retry);
    this.#retry = undefined;
    this.#reader?.cancel().catch(() => {});
    this.#reader = undefined;
  }

  async #run(): Promise<void> {
    const generation = this.#generation;
    const current = () => this.#running && generation === this.#generation;
    let live = false;
    try {
      const reader = this.#kv.watch(this.#keys).getReader();
      this.#reader = reader;
      for (;;) {
        const { done } = await reader.read();
        if (done || !current()) break;
        const first = !live;
        if (first) {
          live = true;
          this.#on.live(true);
        }
        this.#on.changed(first);
      }
    } catch { /* KV down, or the stream broke: tried again below */ }
    if (live) this.#on.live(false);
    if (!current()) return;
    this.#reader = undefined;
    this.#retry = this.#clock.setTimeout(() => {
      this.#retry = undefined;
      if (current()) this.#run();
    }, RETRY_MS);
  }
}
