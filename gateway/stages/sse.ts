/**
 * Event boundaries of a server-sent-event stream, judged from the last four
 * bytes seen (packed in one integer, the newest lowest) so that relaying a
 * chunk costs a few byte reads, never a scan. An event ends with an empty
 * line; a line ends with LF, CR or CRLF.
 *
 * @module
 */

const LF = 0x0a;
const CR = 0x0d;

/** The last four bytes seen after `chunk`, given those seen before it. */
export function shiftIn(tail: number, chunk: Uint8Array): number {
  const n = chunk.length;
  for (let i = n > 4 ? n - 4 : 0; i < n; i++) tail = ((tail << 8) | chunk[i]) >>> 0;
  return tail;
}

/** True when a stream whose last four bytes are `tail` ends at an event boundary (or has sent nothing). */
export function atEventBoundary(tail: number, bytesSeen: number): boolean {
  if (bytesSeen === 0) return true;
  const b1 = tail & 0xff;
  const b2 = (tail >>> 8) & 0xff;
  const b3 = (tail >>> 16) & 0xff;
  // An empty line ended by CR, or by LF alone.
  if (b1 === CR || (b1 === LF && b2 !== CR)) return b2 === LF || b2 === CR;
  // An empty line ended by CRLF: the line before it ended too.
  if (b1 === LF && b2 === CR) return b3 === LF || b3 === CR;
  return false;
}

/**
 * Where the first event in `chunk` ends (the index just past it), given the
 * last four bytes before it; -1 when no event ends in it.
 */
export function eventEnd(chunk: Uint8Array, tail: number): number {
  for (let i = 0; i < chunk.length; i++) {
    tail = ((tail << 8) | chunk[i]) >>> 0;
    if (atEventBoundary(tail, 1)) {
      // A CR followed by its LF: the LF belongs to the same line end.
      return chunk[i] === CR && chunk[i + 1] === LF ? i + 2 : i + 1;
    }
  }
  return -1;
}
