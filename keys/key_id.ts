/**
 * A short, stable id for a provider key: the first 12 hex digits of its
 * SHA-256. Safe to log and to use in KV keys; the key cannot be read back.
 */
export async function keyId(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  const hex = Array.from(
    new Uint8Array(digest).subarray(0, 6),
    (b) => b.toString(16).padStart(2, "0"),
  );
  return `k_${hex.join("")}`;
}
