/** Runs `fn` with a fresh in-memory KV, closed afterwards however `fn` ends. */
export async function withMemoryKv<T>(fn: (kv: Deno.Kv) => Promise<T>): Promise<T> {
  const kv = await Deno.openKv(":memory:");
  try {
    return await fn(kv);
  } finally {
    kv.close();
  }
}
