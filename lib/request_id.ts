/** Crockford's base 32, the ULID alphabet. */
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODES = Uint8Array.from(ALPHABET, (c) => c.charCodeAt(0));
const MAX_TIME = 2 ** 48 - 1;

const POOL_BYTES = 4096;
const pool = new Uint8Array(POOL_BYTES);
let next = POOL_BYTES;

let lastMs = NaN;
let lastTime = "";

/** The 10-character time part of a ULID: `ms` in base 32, most significant first. */
function encodeTime(ms: number): string {
  let out = "";
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[ms % 32] + out;
    ms = Math.floor(ms / 32);
  }
  return out;
}

/**
 * A new request id: a ULID (26 characters, sortable by time) for `now`
 * (epoch ms). Its 80 random bits come from a pooled buffer, one
 * `getRandomValues` call per 256 ids, and the time part is encoded once
 * per millisecond: a busy gateway makes several ids in each.
 */
export function requestId(now: number = Date.now()): string {
  if (now !== lastMs) {
    if (!(Number.isInteger(now) && now >= 0 && now <= MAX_TIME)) {
      throw new RangeError(`now must be an integer epoch ms in [0, 2^48) (got ${now})`);
    }
    lastMs = now;
    lastTime = encodeTime(now);
  }
  if (next + 16 > POOL_BYTES) {
    crypto.getRandomValues(pool);
    next = 0;
  }
  // 256 is a multiple of 32: the low five bits of a random byte are uniform.
  // One call makes the 16 characters (no string per character).
  const p = pool, n = next;
  next += 16;
  return lastTime + String.fromCharCode(
    CODES[p[n] & 31],
    CODES[p[n + 1] & 31],
    CODES[p[n + 2] & 31],
    CODES[p[n + 3] & 31],
    CODES[p[n + 4] & 31],
    CODES[p[n + 5] & 31],
    CODES[p[n + 6] & 31],
    CODES[p[n + 7] & 31],
    CODES[p[n + 8] & 31],
    CODES[p[n + 9] & 31],
    CODES[p[n + 10] & 31],
    CODES[p[n + 11] & 31],
    CODES[p[n + 12] & 31],
    CODES[p[n + 13] & 31],
    CODES[p[n + 14] & 31],
    CODES[p[n + 15] & 31],
  );
}
