import type { ServiceStyle } from "../../config/mod.ts";
import type { ClientHead, HeaderPairs } from "../headers.ts";

/**
 * Compares a client's secret with the password in time that depends only
 * on the password's length, never on where the first difference lies.
 * Compares UTF-16 code units directly: no encoding, no allocation.
 */
export function timingSafeEqual(given: string, expected: string): boolean {
  let diff = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) {
    // Past the end of `given`, charCodeAt is NaN and `| 0` makes it 0: the loop length stays fixed.
    diff |= expected.charCodeAt(i) ^ (given.charCodeAt(i) | 0);
  }
  return diff === 0;
}

/**
 * The credential a client presented: `Authorization: Bearer`, `x-api-key`,
 * and on gemini also `x-goog-api-key`, and `?key=` in `search` (the raw
 * query) where the service accepts it (`keyInQuery`). Undefined when none.
 */
export function clientCredential(
  head: Pick<ClientHead, "authorization" | "apiKey" | "googApiKey">,
  search: string,
  style: ServiceStyle,
  keyInQuery = false,
): string | undefined {
  if (head.authorization !== null) {
    const token = bearerToken(head.authorization);
    if (token !== undefined) return token;
  }
  if (head.apiKey !== null) return head.apiKey.trim();
  if (style === "gemini") {
    if (head.googApiKey !== null) return head.googApiKey.trim();
    const q = keyInQuery && search ? new URLSearchParams(search).get("key") : null;
    if (q !== null) return q;
  }
  return undefined;
}

/**
 * The password of `Basic <base64(user:password)>` (any user), or undefined:
 * how a browser signs in to the admin's status page.
 */
export function basicPassword(value: string | null): string | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (v.slice(0, 6).toLowerCase() !== "basic ") return undefined;
  try {
    const decoded = new TextDecoder().decode(
      Uint8Array.from(atob(v.slice(6).trim()), (c) => c.charCodeAt(0)),
    );
    const colon = decoded.indexOf(":");
    return colon < 0 ? undefined : decoded.slice(colon + 1);
  } catch {
    return undefined;
  }
}

/** The token of `Bearer <token>` (scheme in any case, spaces around), or undefined. */
function bearerToken(value: string): string | undefined {
  const v = value.trim();
  if (v.length < 8 || v.slice(0, 6).toLowerCase() !== "bearer") return undefined;
  const c = v.charCodeAt(6);
  if (c !== 0x20 && c !== 0x09) return undefined;
  const token = v.slice(7).trim();
  return token === "" ? undefined : token;
}

/** Puts the provider key where the provider expects it (credential headers were never copied). */
export function setUpstreamAuth(
  headers: HeaderPairs,
  style: ServiceStyle,
  key: string,
  geminiNative: boolean,
): void {
  if (style === "anthropic") {
    headers.push(["x-api-key", key]);
    if (!headers.some(([k]) => k === "anthropic-version")) {
      headers.push(["anthropic-version", "2023-06-01"]);
    }
  } else if (style === "gemini" && geminiNative) {
    headers.push(["x-goog-api-key", key]);
  } else {
    headers.push(["authorization", `Bearer ${key}`]);
  }
}
