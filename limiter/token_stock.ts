/**
 * Leased tokens not yet spent; token k falls due at `nextAt + k·spacingMs`.
 * Batches form a chain, oldest first, through `next`: the request path
 * reads named fields only (an array's `shift()` and index reads changed
 * their feedback when a batch ran out, which de-optimized the token fast path).
 */
export class TokenBatch {
  n: number;
  nextAt: number;
  spacingMs: number;
  receivedAt: number;
  next: TokenBatch | undefined = undefined;

  constructor(n: number, nextAt: number, spacingMs: number, receivedAt: number) {
    this.n = n;
    this.nextAt = nextAt;
    this.spacingMs = spacingMs;
    this.receivedAt = receivedAt;
  }
}

/**
 * How many tokens at the front of `b` have expired by `cutoff` (now less
 * the lease lifetime): token k falls due at `nextAt + k·spacingMs` and
 * expires leaseMs after that, or after its arrival if it was due before.
 *
 * Written without early returns or loops: every request runs all of it
 * (mostly to find 0), so V8 has seen each operation by the time a lease
 * first expires. An operation never run before de-optimizes the request
 * path when it first runs, and at a low request rate V8 takes seconds to
 * optimize it again.
 */
function expiredTokens(b: TokenBatch, cutoff: number): number {
  const due = b.spacingMs > 0
    ? Math.floor((cutoff - b.nextAt) / b.spacingMs) + 1
    : (cutoff >= b.nextAt ? b.n : 0);
  const arrived = cutoff >= b.receivedAt ? 1 : 0;
  return Math.max(0, Math.min(b.n, due)) * arrived;
}

/** How many tokens of `b` have fallen due by `now` (expired ones included). */
function dueTokens(b: TokenBatch, now: number): number {
  const due = b.spacingMs > 0
    ? Math.floor((now - b.nextAt) / b.spacingMs) + 1
    : (now >= b.nextAt ? b.n : 0);
  return Math.max(0, Math.min(b.n, due));
}

/**
 * One instance's stock of leased tokens: batches that fall due in turn and
 * expire `leaseMs` after falling due (a token never spent within τ of
 * falling due is dropped, which is what bounds what all instances send to
 * `burst + rps·(W + τ)`).
 *
 * A service's or a team's requests cost one token each ({@linkcode
 * TokenStock.spend}); a key's tokens per minute are spent many at once
 * ({@linkcode TokenStock.spendDue}), from batches added whole (spacing 0:
 * a lease is spendable once its last token falls due, so a cost larger
 * than τ's worth of tokens can still be met), and a request that gives up
 * hands its own batch back ({@linkcode TokenStock.withdraw}).
 */
export class TokenStock {
  /** Tokens held, expired ones not yet counted out. */
  count = 0;
  /** Tokens dropped unspent, in all. */
  stranded = 0;
  #first: TokenBatch | undefined;
  #last: TokenBatch | undefined;
  #leaseMs: number;

  constructor(leaseMs: number) {
    this.#leaseMs = leaseMs;
  }

  /** Adds a lease of `n` tokens, the first due at `firstAt`, then one every `spacingMs`. */
  add(n: number, firstAt: number, spacingMs: number, now: number): TokenBatch {
    const batch = new TokenBatch(n, firstAt, spacingMs, now);
    if (this.#last === undefined) this.#first = batch;
    else this.#last.next = batch;
    this.#last = batch;
    this.count += n;
    return batch;
  }

  /**
   * Drops tokens not spent within leaseMs of falling due (counted as
   * stranded). Counted, not dropped one by one: when demand falls, a lease
   * of thousands of tokens can expire at once.
   */
  expire(now: number): void {
    for (let b = this.#first; b !== undefined; b = this.#dropFirst()) {
      // Unconditional, for the reason given at expiredTokens().
      const gone = expiredTokens(b, now - this.#leaseMs);
      b.n -= gone;
      b.nextAt += gone * b.spacingMs;
      this.count -= gone;
      this.stranded += gone;
      if (b.n > 0) return;
    }
  }

  /** Spends the oldest token if it has fallen due by `now` (call `expire` first). */
  spend(now: number): boolean {
    const batch = this.#first;
    if (batch === undefined || batch.nextAt > now) return false;
    batch.nextAt += batch.spacingMs;
    if (--batch.n === 0) this.#dropFirst();
    this.count--;
    return true;
  }

  /**
   * Spends `cost` tokens fallen due by `now`, oldest first, if that many
   * are (call `expire` first); else spends none.
   */
  spendDue(cost: number, now: number): boolean {
    let due = 0;
    for (let b = this.#first; b !== undefined; b = b.next) due += dueTokens(b, now);
    if (due < cost) return false;
    let left = cost;
    for (let b = this.#first; b !== undefined && left > 0; b = b.next) {
      const take = Math.min(left, dueTokens(b, now));
      b.n -= take;
      b.nextAt += take * b.spacingMs;
      left -= take;
    }
    this.count -= cost;
    // Spent batches at the front go now; any further in go when they reach it (expire).
    while (this.#first !== undefined && this.#first.n === 0) this.#dropFirst();
    return true;
  }

  /** Takes back the tokens of `batch` not yet due at `now`; returns how many. */
  withdraw(batch: TokenBatch, now: number): number {
    const undue = batch.n - dueTokens(batch, now);
    batch.n -= undue;
    this.count -= undue;
    return undue;
  }

  /** When every token held has fallen due (-Infinity when none is held). */
  allDueAt(): number {
    let at = -Infinity;
    for (let b = this.#first; b !== undefined; b = b.next) {
      if (b.n > 0) at = Math.max(at, b.nextAt + (b.n - 1) * b.spacingMs);
    }
    return at;
  }

  /** When the oldest token falls due, or undefined when there is none. */
  firstDueAt(): number | undefined {
    return this.#first?.nextAt;
  }

  /** When the newest token falls due, or undefined when there is none. */
  lastDueAt(): number | undefined {
    const last = this.#last;
    return last === undefined ? undefined : last.nextAt + (last.n - 1) * last.spacingMs;
  }

  /** Tokens not yet expired at `at`. */
  lastingAt(at: number): number {
    let n = this.count;
    for (let b = this.#first; b !== undefined; b = b.next) {
      n -= expiredTokens(b, at - this.#leaseMs);
    }
    return n;
  }

  /** Empties the stock; returns how many tokens it held. */
  clear(): number {
    const held = this.count;
    this.#first = this.#last = undefined;
    this.count = 0;
    return held;
  }

  /** Unlinks the oldest batch (spent or expired); returns the next. */
  #dropFirst(): TokenBatch | undefined {
    const next = this.#first!.next;
    this.#first = next;
    if (next === undefined) this.#last = undefined;
    return next;
  }
}
