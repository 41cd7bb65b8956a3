/** One structured log line; never holds a key, password or client token. */
export type LogLine = Record<string, unknown>;

/** One line's JSON; a line JSON cannot encode (a cycle, a BigInt) becomes a line saying so. */
function encodeLine(line: LogLine): string {
  try {
    return JSON.stringify(line);
  } catch (e) {
    return JSON.stringify({ event: "log_line_unencodable", error: String(e) });
  }
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

/**
 * Writes one record as one JSON line, through its own `console.log` call,
 * made where the record is made (in the request's context for a request's
 * line). Deno Deploy's logs are OpenTelemetry log records made from
 * `console.*` calls, one per call, tied to the trace of the request the
 * call is made in; with `OTEL_DENO=true` Deno exports them the same way.
 * Nothing is held back, so nothing is lost when the process ends.
 */
export function jsonLog(line: LogLine): void {
  console.log(encodeLine(line));
}

/** Nothing is held back (each record is written as it is made); kept for the shutdown's order. */
export function flushLog(): void {}
