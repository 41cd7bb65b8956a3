/**
 * Guessing is slow and seen: refused credentials are counted per client
 * address in memory (a bounded least-recently-used map), and past a burst
 * each one shuts that address out for a time that doubles, up to a cap.
 * Only distinct credentials count: a guesser tries many, while a client
 * that keeps sending one stale token (rotated, or not yet known to this
 * instance) is not guessing and is not shut out for it.
 * A request whose credential is right costs one size check while no
 * address is counted, and one map lookup otherwise.
 *
 * Per instance on purpose: a guesser spread over instances is slowed on
 * each, and no KV write is made for a stranger's request.
 *
 * @module
 */

/** Options for {@linkcode LoginGuard}. */
export interface LoginGuardOptions {
  /** Refused credentials an address may present before it is shut out. Default 10. */
  burst?: number;
  /** The first shut-out, in ms; each further refusal doubles it. Default 1000. */
  baseMs?: number;
  /** The longest shut-out, in ms. Default 900000 (15 min). */
  maxMs?: number;
  /** Refusals older than this are forgotten, in ms. Default 900000. */
  forgetMs?: number;
  /** Addresses remembered at most (the least recently refused are dropped). Default 10000. */
  maxAddresses?: number;
}

interface Strikes {
  n: number;
  since: number;
  blockedUntil: number;
  /** Fingerprints of the credentials counted (never the credentials). */
  seen: Set<number>;
}

/** A 32-bit FNV-1a fingerprint: tells credentials apart without keeping them. */
function fingerprint(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Refused credentials per client address; see the module doc. */
export class LoginGuard {
  #burst: number;
  #baseMs: number;
  #maxMs: number;
  #forgetMs: number;
  #max: number;
  #strikes = new Map<string, Strikes>();

  constructor(options: LoginGuardOptions = {}) {
    this.#burst = options.burst ?? 10;
    this.#baseMs = options.baseMs ?? 1000;
    this.#maxMs = options.maxMs ?? 900_000;
    this.#forgetMs = options.forgetMs ?? 900_000;
    this.#max = options.maxAddresses ?? 10_000;
    for (const [name, v] of Object.entries({ burst: this.#burst, maxAddresses: this.#max })) {
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`${name} must be a positive integer (got ${v})`);
      }
    }
  }

  /** Whether any address is counted (when none is, there is nothing to look up). */
  get watching(): boolean {
    return this.#strikes.size > 0;
  }

  /** How long `address` is still shut out, in ms (0: it may try). */
  shutOutFor(address: string, now: number): number {
    const s = this.#strikes.get(address);
    return s === undefined ? 0 : Math.max(0, s.blockedUntil - now);
  }

  /**
   * Counts `credential`, refused, from `address` (unless it was counted
   * already); returns how long the address is now shut out, in ms.
   */
  refused(address: string, credential: string, now: number): number {
    let s = this.#strikes.get(address);
    if (s === undefined || now - s.since > this.#forgetMs) {
      s = { n: 0, since: now, blockedUntil: 0, seen: new Set() };
    }
    this.#strikes.delete(address); // re-inserted last: the map's order is recency
    this.#strikes.set(address, s);
    if (this.#strikes.size > this.#max) this.#strikes.delete(this.#strikes.keys().next().value!);
    const f = fingerprint(credential);
    if (s.seen.has(f)) return Math.max(0, s.blockedUntil - now);
    if (s.seen.size <= this.#burst) s.seen.add(f);
    s.n++;
    if (s.n > this.#burst) {
      const ms = Math.min(this.#maxMs, this.#baseMs * 2 ** Math.min(30, s.n - this.#burst - 1));
      s.blockedUntil = now + ms;
    }
    return Math.max(0, s.blockedUntil - now);
  }
}

/**
 * The client's address: the configured trusted header's (the last entry of
 * `x-forwarded-for`, the one your proxy added; any other header whole), else
 * the connection's. "unknown" in process, where there is no connection.
 */
export function clientAddress(
  req: Request,
  info: Deno.ServeHandlerInfo | undefined,
  header: string | undefined,
): string {
  if (header !== undefined) {
    const v = req.headers.get(header);
    if (v !== null && v.trim() !== "") {
      const last = header === "x-forwarded-for" ? v.split(",").at(-1)! : v;
      return last.trim().slice(0, 64);
    }
  }
  const addr = info?.remoteAddr as Deno.NetAddr | undefined;
  return addr?.hostname ?? "unknown";
}
