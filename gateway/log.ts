import { type Clock, systemClock, type TimerHandle } from "../limiter/mod.ts";

/** One structured log line; never holds a key, password or client token. */
export type LogLine = Record<string, unknown>;

/** Options for {@linkcode createJsonLog}. */
export interface JsonLogOptions {
  /** Where text goes (a newline is added). Default: standard output, see {@linkcode writeStdout}. */
  write?: (text: string) => void;
  /** Most lines in one write. Default 64. */
  maxBatch?: number;
  /**
   * While lines keep coming, a batch goes out with the first line logged
   * this long (ms) or more after the batch began. Default 50.
   */
  flushMs?: number;
  /**
   * When no line follows, the longest a line waits, in ms (>= `flushMs`).
   * Default: 250, or `flushMs` if that is longer.
   */
  quietFlushMs?: number;
  /** Time and timers. Default: the system clock. */
  clock?: Clock;
}

/** A JSON-lines log: `log` queues a line, `flush` writes what is queued. */
export interface JsonLog {
  /** Queues a line; it is encoded when written, so it must not change after this call. */
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

/** One line's JSON; a line JSON cannot encode (a cycle, a BigInt) becomes a line saying so. */
function encodeLine(line: LogLine): string {
  try {
    return JSON.stringify(line);
  } catch (e) {
    return JSON.stringify({ event: "log_line_unencodable", error: String(e) });
  }
}

/**
 * A JSON-lines log for the request path. Lines are written in batches, one
 * write per batch rather than per request: a batch goes out when it holds
 * `maxBatch` lines, or with the first line logged `flushMs` after it began.
 * So a steady stream of requests sets no timer per batch. Only for the last
 * lines before a quiet spell does one timer, armed at most once per
 * `quietFlushMs`, write them. (At a few hundred requests a second a timer
 * per 50 ms batch cost more than the writes: every one wakes an idle
 * process and runs code too rarely run to be optimized.) Call `flush()`
 * before the process exits.
 */
export function createJsonLog(options: JsonLogOptions = {}): JsonLog {
  const write = options.write ?? writeStdout;
  const maxBatch = options.maxBatch ?? 64;
  const flushMs = options.flushMs ?? 50;
  const quietFlushMs = options.quietFlushMs ?? Math.max(250, flushMs);
  const clock = options.clock ?? systemClock;
  if (!(maxBatch >= 1)) throw new RangeError(`maxBatch must be >= 1 (got ${maxBatch})`);
  if (!(flushMs >= 0)) throw new RangeError(`flushMs must be >= 0 (got ${flushMs})`);
  if (!(quietFlushMs >= flushMs)) {
    throw new RangeError(`quietFlushMs must be >= flushMs (got ${quietFlushMs})`);
  }
  // Lines are encoded when their batch is written, in one loop: at a low
  // request rate that costs less than encoding each on its own request.
  let pending: LogLine[] = [];
  let batchStart = 0;
  let timer: TimerHandle | undefined;
  const writeBatch = () => {
    const lines = pending;
    if (lines.length === 0) return;
    pending = [];
    let text = encodeLine(lines[0]);
    for (let i = 1; i < lines.length; i++) text += "\n" + encodeLine(lines[i]);
    write(text);
  };
  const onQuiet = () => {
    timer = undefined;
    writeBatch();
  };
  return {
    log(line) {
      const now = clock.now();
      if (pending.length === 0) batchStart = now;
      pending.push(line);
      if (pending.length >= maxBatch || now - batchStart >= flushMs) return writeBatch();
      // Left armed when a batch goes out early: it then writes a later batch
      // a little early, which costs less than clearing and arming a timer.
      if (timer === undefined) timer = clock.setTimeout(onQuiet, quietFlushMs);
    },
    flush() {
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
      writeBatch();
    },
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
let throughConsole = false;

/**
 * Where records go: `true` (on Deno Deploy, or with OpenTelemetry on),
 * each through its own `console.log` call, made where the record is made
 * (in the request's context for a request's line). Deploy's logs are
 * OpenTelemetry log records made from `console.*` calls, one per call,
 * tied to the trace of the request the call is made in; with
 * `OTEL_DENO=true` Deno exports them the same way. `false` (the default):
 * to standard output in batches ({@linkcode createJsonLog}), which costs
 * less: `console.log` per line measured about 8% more CPU per request at
 * one connection, and a write per line about 2% more than batches.
 */
export function logThroughConsole(on: boolean): void {
  throughConsole = on;
}

/** Writes one JSON line: through console.log, or batched to stdout (see {@linkcode logThroughConsole}). */
export function jsonLog(line: LogLine): void {
  if (throughConsole) console.log(encodeLine(line));
  else processLog.log(line);
}

/** Writes every queued line of {@linkcode jsonLog} now. */
export const flushLog = (): void => processLog.flush();
