import { type Clock, WakeList } from "../limiter/mod.ts";
import type { KvCallOptions, KvCas, KvWrite } from "../kv/mod.ts";
import {
  adminPauseRecord,
  type BackoffRecord,
  BackoffStore,
  type BackoffTurn,
  GO,
  PROBE_POLL_MS,
  samePause,
} from "./backoff_store.ts";

export type { BackoffRecord, BackoffTurn };

/** Options for {@linkcode ProviderBackoff}. */
export interface ProviderBackoffOptions {
  service: string;
  /** How many keys the service has (a single key's 429 is the provider's). */
  keys: number;
  clock: Clock;
  /** Where the pause is shared; without it the pause holds for this instance only. */
  kv?: KvCas & KvWrite;
  call?: KvCallOptions;
  instanceId: string;
  log?: (event: string, detail: Record<string, unknown>) => void;
  /** Answers older than this do not count ("the last few seconds"), in ms. Default 5000. */
  windowMs?: number;
  /** The first pause when the provider names no time, in ms. Default 5000. */
  firstPauseMs?: number;
  /** The longest pause, in ms. Default 300000. */
  maxPauseMs?: number;
  /** How long a probe may take before another instance may probe, in ms. Default 30000. */
  probeMs?: number;
}

/**
 * A provider-wide back-off. Provider limits often belong to the account or
 * the IP, not the key: when every key that answered in the last few
 * seconds got 429 (two or more keys, or the only key), the service pauses
 * (a key's success counts against that only if its request was sent after
 * the first refused one was: an answer to an earlier request says nothing
 * of the provider since, as for {@linkcode ProviderBackoff.holdRetry}),
 * until the time the provider named (else 5 s), across instances through
 * KV; requests wait within their deadlines instead of burning the other
 * keys one by one. After the pause one request, on one instance, is the
 * probe: a success ends the pause, a 429 pauses again for twice as long.
 */
export class ProviderBackoff {
  #o: ProviderBackoffOptions;
  /** Where the pause is shared; undefined: this instance only. */
  #store: BackoffStore | undefined;
  #windowMs: number;
  #answers = new Map<string, { at: number; limited: boolean; sentAt: number }>();
  #pause: BackoffRecord | undefined;
  #probing = false;
  /** Upstream requests of this service sent from here and not yet answered. */
  #inFlight = 0;
  /**
   * Requests waiting for the pause to end and retries held for the next
   * answer: woken by any change (an answer, a pause begun or ended, the
   * probe lost, an admin's word, another instance's record).
   */
  #changes: WakeList;
  /** When the latest request answered with a success was sent. */
  #lastSuccessSentAt = -Infinity;
  /** Pause writes under way, and whether the last one failed: KV may not hold this pause. */
  #writing = 0;
  #unwritten = false;

  constructor(options: ProviderBackoffOptions) {
    this.#o = options;
    this.#store = options.kv && new BackoffStore(options.kv, options.service, options.call);
    this.#changes = new WakeList(options.clock);
    this.#windowMs = options.windowMs ?? 5000;
    if (!(this.#windowMs > 0)) throw new RangeError(`windowMs must be > 0 (got ${this.#windowMs})`);
  }

  /** The pause in force, if any. */
  get pause(): Readonly<BackoffRecord> | undefined {
    return this.#pause;
  }

  /** May a request go now? A promise only right after a pause, while the probe is claimed. */
  turn(now: number): BackoffTurn | Promise<BackoffTurn> {
    const p = this.#pause;
    if (p === undefined) return GO;
    if (p.admin) return { go: false, untilMs: Infinity, admin: true };
    if (now < p.until) return { go: false, untilMs: p.until };
    const otherProbe = p.probe !== undefined && p.probe.by !== this.#o.instanceId &&
      p.probe.until > now;
    if (this.#probing || otherProbe) return { go: false, untilMs: now + PROBE_POLL_MS };
    this.#probing = true;
    return this.#claimProbe(now);
  }

  /**
   * What an upstream answer says of the provider: `limited` for a 429
   * that is not a daily cap, `named` the wait it asked for, `sentAt` when
   * the request left (an answer to a request sent before a pause says
   * nothing of it), `probe` whether it was the probe.
   */
  answered(
    keyId: string,
    limited: boolean,
    named: number | undefined,
    sentAt: number,
    probe: boolean,
  ): void {
    const now = this.#o.clock.now();
    const p = this.#pause;
    if (probe) this.#probing = false;
    if (p?.admin) return;
    if (!limited) {
      this.#lastSuccessSentAt = Math.max(this.#lastSuccessSentAt, sentAt);
      this.#note(keyId, now, false, sentAt);
      if (p && (probe || sentAt >= p.until)) this.#end(now);
      return;
    }
    if (probe && p) return this.#pauseAgain(p, named, now);
    this.#note(keyId, now, true, sentAt);
    if (p && now < p.until) return;
    let answered = 0;
    let firstRefusedSentAt = Infinity;
    for (const a of this.#answers.values()) {
      if (now - a.at <= this.#windowMs && a.limited) {
        firstRefusedSentAt = Math.min(firstRefusedSentAt, a.sentAt);
      }
    }
    for (const a of this.#answers.values()) {
      if (now - a.at > this.#windowMs) continue;
      if (!a.limited && a.sentAt >= firstRefusedSentAt) return;
      if (a.limited) answered++;
    }
    if (answered < 2 && this.#o.keys !== 1) return;
    const pauseMs = Math.min(this.#max(), named ?? this.#o.firstPauseMs ?? 5000);
    const reason = `${answered} of ${this.#o.keys} keys answered 429 within ${this.#windowMs} ms`;
    this.#start({ until: now + pauseMs, strikes: 1, pauseMs, reason }, now);
  }

  /** A request is leaving for the provider (each is settled once, answered or not). */
  sending(): void {
    this.#inFlight++;
  }

  /** A request sent has its answer (or none): wakes the retries held for it. */
  settled(): void {
    this.#inFlight = Math.max(0, this.#inFlight - 1);
    this.#changes.wake();
  }

  /**
   * Waits until `untilMs` (a turn's), or sooner when the pause changes (see
   * {@linkcode ProviderBackoff.turn} again then); false when `signal` aborts.
   */
  waitForTurn(untilMs: number, signal?: AbortSignal): Promise<boolean> {
    return this.#changes.wait(untilMs, signal);
  }

  /**
   * After a 429 to a request sent at `sentAt`, while other requests' answers
   * are still on their way and no request sent since then has succeeded (a
   * success to an earlier request says nothing of now): the retry waits for
   * the next answer (at most `maxMs`) rather than burn another key, since
   * that answer may start a pause. Undefined when the retry may go at once.
   */
  holdRetry(sentAt: number, maxMs = 2000): Promise<boolean> | undefined {
    if (this.#inFlight === 0 || this.#pause !== undefined) return undefined;
    if (this.#lastSuccessSentAt >= sentAt) return undefined;
    return this.#changes.wait(this.#o.clock.now() + maxMs);
  }

  /** The probe got no answer (network error, timeout): another request may probe. */
  probeLost(): void {
    this.#probing = false;
    if (this.#pause?.probe?.by === this.#o.instanceId) this.#pause.probe = undefined;
    this.#changes.wake();
  }

  /** An admin pauses the service on every instance (within a second), until resumed. */
  async adminPause(): Promise<void> {
    const rec = adminPauseRecord();
    this.#pause = rec;
    this.#changes.wake();
    this.#o.log?.("service_paused", { service: this.#o.service });
    await this.#store?.set(rec);
  }

  /** An admin resumes the service (any pause ends, the provider's too). */
  async adminResume(): Promise<void> {
    this.#pause = undefined;
    this.#probing = false;
    this.#changes.wake();
    this.#o.log?.("service_resumed", { service: this.#o.service });
    await this.#store?.remove();
  }

  /** Reads the pause other instances started or ended. */
  async refresh(): Promise<void> {
    if (!this.#store) return;
    const value = await this.#store.read();
    const now = this.#o.clock.now();
    const p = this.#pause;
    if (value) {
      // An admin's pause held here ends when the record is no longer one (resumed, paused since).
      if (!p || value.admin || p.admin || value.until >= p.until) this.#pause = value;
    } else if (p && !this.#probing) {
      // Gone from KV: over, or ended elsewhere (an admin resumed), unless KV has not heard of it.
      const held = this.#writing > 0 || this.#unwritten;
      if (p.admin || now >= p.until || !held) this.#pause = undefined;
    }
    if (!samePause(p, this.#pause)) this.#changes.wake();
  }

  /** Records a key's latest answer (the record is reused: one per key, none per request). */
  #note(keyId: string, at: number, limited: boolean, sentAt: number): void {
    const a = this.#answers.get(keyId);
    if (a === undefined) return void this.#answers.set(keyId, { at, limited, sentAt });
    a.at = at;
    a.limited = limited;
    a.sentAt = sentAt;
  }

  #max(): number {
    return this.#o.maxPauseMs ?? 300_000;
  }

  #pauseAgain(p: BackoffRecord, named: number | undefined, now: number): void {
    const pauseMs = Math.min(this.#max(), Math.max(named ?? 0, 2 * p.pauseMs));
    this.#start({
      until: now + pauseMs,
      strikes: p.strikes + 1,
      pauseMs,
      reason: "the probe after the pause answered 429",
    }, now);
  }

  #start(rec: BackoffRecord, now: number): void {
    this.#pause = rec;
    this.#changes.wake();
    this.#o.log?.("provider_backoff", {
      service: this.#o.service,
      reason: rec.reason,
      ms: rec.pauseMs,
      strikes: rec.strikes,
    });
    // An admin's pause, perhaps not yet read here, is never overwritten by the provider's.
    this.#write(
      (old) =>
        old && (old.admin || (old.until > rec.until && old.strikes >= rec.strikes)) ? old : rec,
      now,
    );
  }

  #end(now: number): void {
    const p = this.#pause!;
    this.#pause = undefined;
    this.#changes.wake();
    this.#o.log?.("provider_backoff_end", { service: this.#o.service, strikes: p.strikes });
    this.#write(
      (old) => (old && (old.admin || (old.until > now && old.strikes > p.strikes)) ? old : null),
      now,
    );
  }

  /** Claims the probe in KV (one instance probes); true without KV. */
  async #claimProbe(now: number): Promise<BackoffTurn> {
    const probe = { by: this.#o.instanceId, until: now + (this.#o.probeMs ?? 30_000) };
    this.#pause!.probe = probe;
    if (!this.#store) return { go: true, probe: true };
    try {
      const turn = await this.#store.claimProbe(probe, now);
      if (!turn.go || !turn.probe) {
        this.#probing = false;
        // Another instance's probe ended the pause: the waiters go. (One still
        // out is not news: woken, they would only claim again, and again.)
        if (turn.go) {
          this.#pause = undefined;
          this.#changes.wake();
        }
      }
      return turn;
    } catch {
      // KV is down: this instance probes for itself.
      return { go: true, probe: true };
    }
  }

  #write(next: (old: BackoffRecord | null) => BackoffRecord | null, now: number): void {
    if (!this.#store) return;
    this.#writing++;
    this.#store.update(next, now).then(() => this.#unwritten = false, (e) => {
      this.#unwritten = true;
      this.#o.log?.("provider_backoff_write_failed", {
        service: this.#o.service,
        error: String(e),
      });
    }).finally(() => this.#writing--);
  }
}
