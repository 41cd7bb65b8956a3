/** Bytes backed by a plain ArrayBuffer, as fetch and Response accept them. */
export type Bytes = Uint8Array<ArrayBuffer>;

/** The request body read whole (so retries can resend it), or why not. */
export type BodyResult =
  | { ok: true; body: Bytes | undefined }
  | { ok: false; reason: "too_large" | "unreadable" };

/**
 * Reads a request body up to `limit` bytes. A declared `content-length`
 * over the limit is refused before a byte is read; a chunked body is cut
 * off as soon as it passes the limit. `length` is the request's
 * `content-length` header (default: read from `req.headers`).
 */
export async function readBody(
  req: Request,
  limit: number,
  length: string | null = req.headers.get("content-length"),
): Promise<BodyResult> {
  if (length !== null) {
    if (Number(length) > limit) {
      await req.body?.cancel().catch(() => {});
      return { ok: false, reason: "too_large" };
    }
    // Known length: read without touching `req.body`. Deno.serve hands over a
    // body it has already buffered as it is; asking for `req.body` first
    // would wrap it in a ReadableStream only to collect it again.
    try {
      const body = await req.bytes();
      return body.byteLength > limit
        ? { ok: false, reason: "too_large" }
        : { ok: true, body: body.byteLength > 0 ? body : undefined };
    } catch {
      return { ok: false, reason: "unreadable" };
    }
  }
  if (req.body === null) return { ok: true, body: undefined };
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        return { ok: false, reason: "too_large" };
      }
      chunks.push(value);
    }
  } catch {
    return { ok: false, reason: "unreadable" };
  }
  if (chunks.length === 1) return { ok: true, body: chunks[0] as Bytes };
  const body = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    body.set(c, offset);
    offset += c.byteLength;
  }
  return { ok: true, body };
}
