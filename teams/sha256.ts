/**
 * SHA-256 of a short string, in plain JavaScript, for the authenticate
 * stage: every team request hashes its token. `node:crypto`'s `createHash`
 * costs two runtime ops and a hash object per call; under a load of team
 * requests at 32 connections it cost about 4% more CPU per request than
 * this (bench/team_path.ts: 1.15× the password path with it, 1.11× without). Here the message and the schedule
 * live in buffers made once, and nothing is allocated but the hex string.
 * `tests/teams/sha256_test.ts` checks it against `node:crypto`.
 *
 * @module
 */

/** Round constants and initial hash values (FIPS 180-4 §4.2.2, §5.3.3), as hex words. */
const words = (hex: string) => Uint32Array.from(hex.split(" "), (w) => parseInt(w, 16));
const K = words(
  "428a2f98 71374491 b5c0fbcf e9b5dba5 3956c25b 59f111f1 923f82a4 ab1c5ed5 d807aa98 12835b01 " +
    "243185be 550c7dc3 72be5d74 80deb1fe 9bdc06a7 c19bf174 e49b69c1 efbe4786 0fc19dc6 240ca1cc " +
    "2de92c6f 4a7484aa 5cb0a9dc 76f988da 983e5152 a831c66d b00327c8 bf597fc7 c6e00bf3 d5a79147 " +
    "06ca6351 14292967 27b70a85 2e1b2138 4d2c6dfc 53380d13 650a7354 766a0abb 81c2c92e 92722c85 " +
    "a2bfe8a1 a81a664b c24b8b70 c76c51a3 d192e819 d6990624 f40e3585 106aa070 19a4c116 1e376c08 " +
    "2748774c 34b0bcb5 391c0cb3 4ed8aa4a 5b9cca4f 682e6ff3 748f82ee 78a5636f 84c87814 8cc70208 " +
    "90befffa a4506ceb bef9a3f7 c67178f2",
);
const INIT = words("6a09e667 bb67ae85 3c6ef372 a54ff53a 510e527f 9b05688c 1f83d9ab 5be0cd19");
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const encoder = new TextEncoder();

/** The message buffer, grown when a longer string comes; reused between calls. */
let buffer = new Uint8Array(256);
const W = new Uint32Array(64);
const H = new Uint32Array(8);

const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));

function block(m: Uint8Array, at: number): void {
  for (let i = 0; i < 16; i++) {
    const j = at + i * 4;
    W[i] = (m[j] << 24) | (m[j + 1] << 16) | (m[j + 2] << 8) | m[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15], b = W[i - 2];
    const s0 = rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3);
    const s1 = rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
  for (let i = 0; i < 64; i++) {
    const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i]) |
      0;
    const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  H[0] += a;
  H[1] += b;
  H[2] += c;
  H[3] += d;
  H[4] += e;
  H[5] += f;
  H[6] += g;
  H[7] += h;
}

/** Hex SHA-256 of `text` as UTF-8. */
export function sha256Hex(text: string): string {
  // UTF-8 takes at most 3 bytes per UTF-16 unit; 9 more for the padding and the length.
  const need = Math.ceil((text.length * 3 + 9) / 64) * 64;
  if (buffer.length < need) buffer = new Uint8Array(need);
  const n = encoder.encodeInto(text, buffer).written;
  const total = Math.ceil((n + 9) / 64) * 64;
  buffer.fill(0, n, total);
  buffer[n] = 0x80;
  const bits = n * 8;
  buffer[total - 4] = bits >>> 24;
  buffer[total - 3] = bits >>> 16;
  buffer[total - 2] = bits >>> 8;
  buffer[total - 1] = bits;
  buffer[total - 5] = Math.floor(bits / 2 ** 32);
  H.set(INIT);
  for (let at = 0; at < total; at += 64) block(buffer, at);
  let hex = "";
  for (let i = 0; i < 8; i++) {
    const v = H[i];
    hex += HEX[v >>> 24] + HEX[(v >>> 16) & 255] + HEX[(v >>> 8) & 255] + HEX[v & 255];
  }
  return hex;
}
