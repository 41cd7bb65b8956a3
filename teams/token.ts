/**
 * Team tokens: made with at least 128 random bits, known to the gateway
 * only by their SHA-256. The raw token is shown once, when it is made, and
 * never logged, stored or echoed.
 *
 * @module
 */
import { sha256Hex } from "./sha256.ts";

/** Every team token made by the admin API starts with this. */
export const TEAM_TOKEN_PREFIX = "kvt_";

/** Hex SHA-256 of a token: what config, KV and the lookup hold instead of it. */
export function tokenSha256(token: string): string {
  // Synchronous, and cheaper than node:crypto per call (see sha256.ts).
  return sha256Hex(token);
}

/** A new team token: `kvt_` and 32 random bytes in base64url (256 bits). */
export function newTeamToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return TEAM_TOKEN_PREFIX + btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** A short id of a token hash for display and logs: the first 8 hex digits. */
export function hashId(sha256: string): string {
  return sha256.slice(0, 8);
}
