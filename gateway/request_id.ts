import { ulid } from "ulid";

const POOL_BYTES = 4096;
const pool = new Uint8Array(POOL_BYTES);
let next = POOL_BYTES;

/**
 * Cryptographic random numbers in [0, 1) drawn from a pooled buffer: one
 * `getRandomValues` call per 4096 draws instead of one per draw (the `ulid`
 * package's default asks once per character, 16 times per id).
 */
function pooledRandom(): number {
  if (next === POOL_BYTES) {
    crypto.getRandomValues(pool);
    next = 0;
  }
  return pool[next++] / 256;
}

/** A new request id: a ULID (sortable by time) for `now` (epoch ms). */
export function requestId(now: number = Date.now()): string {
  return ulid(now, pooledRandom);
}
