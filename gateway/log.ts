/** One structured log line; never holds a key, password or client token. */
export type LogLine = Record<string, unknown>;

/** Options for {@linkcode createJsonLog}. */
export interface JsonLogOptions {
  /** Where text goes (a newline is added). Default: standard output, see {@linkcode writeStdout}. */
  write?: (text: string) => void;
  /** Most lines in one write. Default 64. */
  maxBatch?: number;
  /** The longest a line waits to be written, in ms. Default 50. */
  flushMs?: number;
}

/** A JSON-lines log: `log` queues a line, `flush` writes what is queued. */
export interface JsonLog {
  log(line: LogLine): void;
  flush(): void;
}

const encoder = new TextEncoder();

/**
 * Writes `text` and a newline to standard output, straight to the file:
 * `console.log` would first scan a batch of lines for format specifiers.
 * A failed write (a closed pipe) drops the text; logging never takes the
 * gateway down.
 */
export function writeStdout(text: string): void {
  const bytes = encoder.encode(text + "\n");
  try {
    for (let off = 0; off < bytes.length;) off += Deno.stdout.writeSync(bytes.subarray(off));
  } catch {
    // Nowhere left to log to.
  }
}

/**
 * A JSON-lines log for the request path. Lines wait up to `flushMs` and go
 * out together in one write (at most `maxBatch` lines): one write and one
 * timer per batch rather than per request, which on a busy gateway costs a
 * tenth as much. A lone line goes out alone. Call `flush()` before the
 * process exits.
 */
export function createJsonLog(options: JsonLogOptions = {}): JsonLog {
  const write = options.write ?? writeStdout;
  const maxBatch = options.maxBatch ?? 64;
  const flushMs = options.flushMs ?? 50;
  if (!(maxBatch >= 1)) throw new RangeError(`maxBatch must be >= 1 (got ${maxBatch})`);
  let pending: string[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending.length === 0) return;
    const text = pending.length === 1 ? pending[0] : pending.join("\n");
    pending = [];
    write(text);
  };
  return {
    log(line) {
      pending.push(JSON.stringify(line));
      if (pending.length >= maxBatch) return flush();
      if (!scheduled) {
        scheduled = true;
        setTimeout(flush, flushMs);
      }
    },
    flush,
  };
}

let secondStart = NaN;
let secondPrefix = "";

/**
 * `new Date(ms).toISOString()`. Formatting a date costs about 0.4 µs; a busy
 * gateway logs many lines a second, so the text up to the seconds is
 * remembered for the current second and only the milliseconds are added.
 */
export function isoTime(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0) return new Date(ms).toISOString();
  const milli = ms % 1000;
  const start = ms - milli;
  if (start !== secondStart) {
    secondStart = start;
    secondPrefix = new Date(start).toISOString().slice(0, -4); // "2026-11-26T14:00:00."
  }
  return secondPrefix + (milli < 10 ? "00" : milli < 100 ? "0" : "") + milli + "Z";
}

const processLog = createJsonLog();

/** Writes one JSON line to stdout (batched, at most 50 ms late; see {@linkcode createJsonLog}). */
export const jsonLog = (line: LogLine): void => processLog.log(line);

/** Writes every queued line of {@linkcode jsonLog} now. */
export const flushLog = (): void => processLog.flush();
