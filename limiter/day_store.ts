/**
 * Where {@linkcode DayBudgets}' counts live in KV: a name's requests and
 * tokens on a day, each a `Deno.KvU64` summed by every instance. A thin
 * adapter: what to count, and when, is DayBudgets'; the pure part is in
 * `day_policy.ts`.
 *
 * @module
 */
import { type CasStep, casUpdate, kvCall, type KvCallOptions, type KvCas, u64 } from "../kv/mod.ts";
import { type DayEntries, type Flushing, keep } from "./day_policy.ts";

/** Builds the key of a name's count (`teamUsageKey` for teams, `keyDayUsageKey` for keys). */
export type UsageKey = (name: string, day: string, what: "requests" | "tokens") => Deno.KvKey;

const WHAT = ["requests", "tokens"] as const;
/** Names whose counts one commit adds (two sums each, well under KV's 1000 mutations). */
const COMMIT_BATCH = 200;

/** The day counts of one kind of name (teams, or one service's keys) in KV. */
export class DayStore {
  #kv: KvCas;
  #usageKey: UsageKey;
  #call: KvCallOptions;

  constructor(kv: KvCas, usageKey: UsageKey, call: KvCallOptions) {
    this.#kv = kv;
    this.#usageKey = usageKey;
    this.#call = call;
  }

  /** Puts one name's counts of a flush into `op`: its requests net of a hand-back, its tokens. */
  sum(op: Deno.AtomicOperation, { name, s, requests, giveBack, tokens }: Flushing): void {
    const n = requests - giveBack;
    if (n > 0) op.sum(this.#usageKey(name, s.day, "requests"), BigInt(n));
    if (tokens > 0) op.sum(this.#usageKey(name, s.day, "tokens"), BigInt(Math.round(tokens)));
  }

  /** Adds the counts, one commit per 200 names; resolves to those written (the others are kept). */
  async commit(batch: Flushing[]): Promise<Flushing[]> {
    const written: Flushing[] = [];
    for (let i = 0; i < batch.length; i += COMMIT_BATCH) {
      const part = batch.slice(i, i + COMMIT_BATCH);
      const op = this.#kv.atomic();
      for (const f of part) this.sum(op, f);
      // KV refusing, the counts wait for the next flush.
      await kvCall(() => op.commit(), this.#call).then(() => written.push(...part), () => {
        part.forEach(keep);
      });
    }
    return written;
  }

  /**
   * Hands back the reservations a flush gives beyond what it counts: KvU64
   * sums cannot go down, so each is a compare-and-set ({@linkcode DayStore.lower}).
   * One that KV refuses waits for the next flush, tokens and all. Resolves to
   * the rest of the batch, to be summed.
   */
  async handBack(batch: Flushing[]): Promise<Flushing[]> {
    await Promise.all(
      batch.filter((f) => f.requests < f.giveBack).map((f) =>
        this.lower(f.name, f.s.day, f.giveBack - f.requests).then(() => {
          f.requests = f.giveBack = 0;
        }, () => keep(f))
      ),
    );
    return batch.filter((f) => f.requests >= f.giveBack);
  }

  /** Takes `n` unspent requests back off a day's count: a compare-and-set (sums cannot go down). */
  async lower(name: string, day: string, n: number): Promise<void> {
    await casUpdate<Deno.KvU64, void>(this.#kv, this.#usageKey(name, day, "requests"), (cur) => ({
      write: new Deno.KvU64(BigInt(Math.max(0, (cur === null ? 0 : Number(cur.value)) - n))),
      result: undefined,
    }), { call: this.#call });
  }

  /**
   * Each name's two counts on `day`, five names (ten keys, a KV read's most)
   * to a read, the reads at once. `"eventual"` for what is only shown.
   */
  async read(
    names: readonly string[],
    day: string,
    consistency: Deno.KvConsistencyLevel = "strong",
  ): Promise<DayEntries[]> {
    const reads: Promise<Deno.KvEntryMaybe<Deno.KvU64>[]>[] = [];
    for (let i = 0; i < names.length; i += 5) {
      const keys = names.slice(i, i + 5).flatMap((n) => WHAT.map((w) => this.#usageKey(n, day, w)));
      reads.push(kvCall(() => this.#kv.getMany<Deno.KvU64[]>(keys, { consistency }), this.#call));
    }
    const entries = (await Promise.all(reads)).flat();
    return names.map((_, j) => [entries[2 * j], entries[2 * j + 1]]);
  }

  /**
   * Reads the days of a flush's `written` names back onto their states (one
   * of another day than the first's: at its next reservation); KV failing,
   * they keep the view they had.
   */
  async readBack(written: Flushing[], now: number): Promise<void> {
    if (written.length === 0) return;
    const same = written.filter((f) => f.s.day === written[0].s.day);
    const counts = await this.read(same.map((f) => f.name), same[0].s.day).catch(() => undefined);
    same.forEach((f, j) => {
      if (counts === undefined) return;
      [f.s.requestsSeen, f.s.tokensSeen] = [u64(counts[j][0]), u64(counts[j][1])];
      f.s.readAt = now;
    });
  }

  /**
   * A compare-and-set on a day's requests count, its tokens count read in
   * the same snapshot: `step` decides from both what to write.
   */
  reserve<R>(
    name: string,
    day: string,
    step: (requests: number, tokens: number) => CasStep<Deno.KvU64, R>,
  ): Promise<{ ok: true; result: R } | { ok: false }> {
    return casUpdate<Deno.KvU64, R>(
      this.#kv,
      this.#usageKey(name, day, "requests"),
      (requests, [tokens]) =>
        step(Number(requests?.value ?? 0), Number((tokens.value as Deno.KvU64 | null)?.value ?? 0)),
      { call: this.#call, alsoRead: [this.#usageKey(name, day, "tokens")] },
    );
  }
}
