/** Bytes backed by a plain ArrayBuffer, as fetch and Response accept them. */
export type Bytes = Uint8Array<ArrayBuffer>;

/** The request body read whole (so retries can resend it), or why not. */
export type BodyResult =
  | {
    ok: true;
    body: Bytes | undefined;
    /** Bytes taken from the budget for it: the caller gives them back when done with the body. */
    held: number;
  }
  | { ok: false; reason: "too_large" | "unreadable" | "busy" };

/** Bytes held against a budget while a body is read: `take` says whether more fit. */
export interface ByteBudget {
  take(n: number): boolean;
  give(n: number): void;
}

/**
 * Reads a request body up to `limit` bytes. A declared `content-length`
 * over the limit is refused before a byte is read; a chunked body is cut
 * off as soon as it passes the limit. `length` is the request's
 * `content-length` header (default: read from `req.headers`).
 *
 * With a `budget`, the bytes are taken from it before they are read (a
 * declared length at once, a chunked body chunk by chunk); a body that
 * does not fit is refused as `busy`, and what it had taken goes back. On
 * success the caller gives the body's length back once it is done with it.
 */
export async function readBody(
  req: Request,
  limit: number,
  length: string | null = req.headers.get("content-length"),
  budget?: ByteBudget,
): Promise<BodyResult> {
  if (length !== null) {
    const declared = Number(length);
    if (declared > limit) {
      await req.body?.cancel().catch(() => {});
      return { ok: false, reason: "too_large" };
    }
    if (budget !== undefined && declared > 0 && !budget.take(declared)) {
      await req.body?.cancel().catch(() => {});
      return { ok: false, reason: "busy" };
    }
    const held = budget !== undefined && declared > 0 ? declared : 0;
    const read = await readDeclared(req, limit, held);
    if (!read.ok) budget?.give(held);
    return read;
  }
  if (req.body === null) return { ok: true, body: undefined, held: 0 };
  return await readChunked(req.body, limit, budget);
}

async function readDeclared(req: Request, limit: number, held: number): Promise<BodyResult> {
  // Known length: read without touching `req.body`. Deno.serve hands over a
  // body it has already buffered as it is; asking for `req.body` first
  // would wrap it in a ReadableStream only to collect it again.
  try {
    const body = await req.bytes();
    return body.byteLength > limit
      ? { ok: false, reason: "too_large" }
      : { ok: true, body: body.byteLength > 0 ? body : undefined, held };
  } catch {
    return { ok: false, reason: "unreadable" };
  }
}

async function readChunked(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  budget: ByteBudget | undefined,
): Promise<BodyResult> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const fail = async (reason: "too_large" | "busy" | "unreadable"): Promise<BodyResult> => {
    budget?.give(size);
    await reader.cancel().catch(() => {});
    return { ok: false, reason };
  };
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (size + value.byteLength > limit) return await fail("too_large");
      if (budget !== undefined && !budget.take(value.byteLength)) return await fail("busy");
      size += value.byteLength;
      chunks.push(value);
    }
  } catch {
    return await fail("unreadable");
  }
  const held = budget === undefined ? 0 : size;
  return { ok: true, body: chunks.length === 0 ? undefined : joinChunks(chunks), held };
}

/** Chunks as one array of bytes (the one chunk itself when there is one). */
export function joinChunks(chunks: readonly Uint8Array[]): Bytes {
  if (chunks.length === 1) return chunks[0] as Bytes;
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * Reads `body` until it ends or more than `cap` bytes have come: all of it,
 * or the chunks so far and the reader of the rest (to relay, or cancel).
 */
export async function readUpTo(
  body: ReadableStream<Uint8Array>,
  cap: number,
): Promise<{ chunks: Uint8Array[]; rest?: ReadableStreamDefaultReader<Uint8Array> }> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  for (let size = 0; size <= cap;) {
    const { done, value } = await reader.read();
    if (done) return { chunks };
    chunks.push(value);
    size += value.byteLength;
  }
  return { chunks, rest: reader };
}
