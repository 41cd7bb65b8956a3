import assert from "node:assert/strict";
import type { TimerHandle } from "../../limiter/mod.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { createJsonLog, isoTime } from "../../gateway/mod.ts";

/** A fake clock that also counts the timers armed on it. */
class CountingClock extends FakeClock {
  armed = 0;
  override setTimeout(fn: () => void, ms: number): TimerHandle {
    this.armed++;
    return super.setTimeout(fn, ms);
  }
}

Deno.test("createJsonLog() writes lines of the same moment in one write, each a JSON line", () => {
  const clock = new CountingClock();
  const writes: string[] = [];
  const log = createJsonLog({ write: (t) => writes.push(t), clock });
  log.log({ a: 1 });
  log.log({ b: "two" });
  assert.deepEqual(writes, [], "nothing written synchronously");
  clock.advanceSync(249);
  assert.deepEqual(writes, [], "a line waits up to quietFlushMs (250 ms) for others");
  clock.advanceSync(1);
  assert.deepEqual(writes, ['{"a":1}\n{"b":"two"}']);
  log.log({ c: 3 });
  clock.advanceSync(250);
  assert.deepEqual(writes[1], '{"c":3}', "a lone line goes out alone");
  assert.deepEqual(clock.pending, 0, "no timer left once everything is written");
});

Deno.test("createJsonLog() under steady traffic writes every flushMs and arms a timer only per quiet period", () => {
  const clock = new CountingClock();
  const writes: { at: number; lines: number[] }[] = [];
  const log = createJsonLog({
    write: (t) =>
      writes.push({ at: clock.now(), lines: t.split("\n").map((l) => JSON.parse(l).at) }),
    clock,
    flushMs: 50,
    quietFlushMs: 250,
  });
  // A line every 10 ms for 2 s, then silence.
  for (let i = 0; i < 200; i++) {
    log.log({ at: clock.now() });
    clock.advanceSync(10);
  }
  clock.advanceSync(300);
  const lines = writes.flatMap((w) => w.lines);
  assert.deepEqual(lines.length, 200, "every line written once, in order");
  assert.deepEqual(lines, [...lines].sort((a, b) => a - b));
  for (const w of writes) {
    for (const at of w.lines) {
      assert(w.at - at <= 250, `a line logged at ${at} waited until ${w.at}`);
    }
  }
  const late = writes.filter((w) => w.at < 2000 && w.at - w.lines[0] > 50);
  assert.deepEqual(late, [], "while lines keep coming, none waits past flushMs");
  assert(writes.length >= 35, `batches of about 5 lines (got ${writes.length} writes)`);
  assert(clock.armed <= 10, `at most one timer per 250 ms (armed ${clock.armed} for 40 batches)`);
  assert.deepEqual(clock.pending, 0);
});

Deno.test("createJsonLog() writes at once when a batch is full, and flush() empties the queue", () => {
  const clock = new CountingClock();
  const writes: string[] = [];
  const log = createJsonLog({ write: (t) => writes.push(t), maxBatch: 2, clock });
  log.log({ n: 1 });
  log.log({ n: 2 });
  log.log({ n: 3 });
  assert.deepEqual(writes, ['{"n":1}\n{"n":2}']);
  log.flush();
  assert.deepEqual(writes, ['{"n":1}\n{"n":2}', '{"n":3}']);
  assert.deepEqual(clock.pending, 0, "flush() clears the quiet timer");
  log.flush();
  assert.deepEqual(writes.length, 2, "nothing left to write");
});

Deno.test("createJsonLog() writes a line JSON cannot encode as a line saying so, and the rest as they are", () => {
  const clock = new FakeClock();
  const writes: string[] = [];
  const log = createJsonLog({ write: (t) => writes.push(t), clock });
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  log.log({ n: 1 });
  log.log(cyclic);
  log.log({ big: 1n });
  log.log({ n: 2 });
  clock.advanceSync(250);
  const lines = writes.join("\n").split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.n ?? l.event), [
    1,
    "log_line_unencodable",
    "log_line_unencodable",
    2,
  ]);
});

Deno.test("createJsonLog() with a flushMs longer than 250 ms waits that long when quiet", () => {
  const clock = new FakeClock();
  const writes: string[] = [];
  const log = createJsonLog({ write: (t) => writes.push(t), clock, flushMs: 400 });
  log.log({ n: 1 });
  clock.advanceSync(399);
  assert.deepEqual(writes, []);
  clock.advanceSync(1);
  assert.deepEqual(writes, ['{"n":1}']);
});

Deno.test("createJsonLog() refuses options that cannot work", () => {
  assert.throws(
    () => createJsonLog({ maxBatch: 0 }),
    (e: unknown) => e instanceof RangeError && e.message.includes("maxBatch"),
  );
  assert.throws(
    () => createJsonLog({ flushMs: -1 }),
    (e: unknown) => e instanceof RangeError && e.message.includes("flushMs"),
  );
  assert.throws(
    () => createJsonLog({ flushMs: 100, quietFlushMs: 50 }),
    (e: unknown) => e instanceof RangeError && e.message.includes("quietFlushMs"),
  );
});

Deno.test("isoTime() matches Date#toISOString", () => {
  const cases = [0, 7, 1_700_000_000_123, 1_700_000_000_123, 1_700_000_000_124, 1.5, -1];
  // Every millisecond across a second boundary, and back again.
  for (let ms = 1_700_000_000_990; ms < 1_700_000_001_120; ms++) cases.push(ms);
  cases.push(1_700_000_000_999, 1_700_000_001_000, 253_402_300_799_999, 253_402_300_800_000);
  for (const ms of cases) assert.deepEqual(isoTime(ms), new Date(ms).toISOString(), `at ${ms}`);
});

Deno.test("jsonLog() goes to standard output as whole JSON lines, once flushed", async () => {
  const script = `import { flushLog, jsonLog } from ${
    JSON.stringify(
      new URL("../../gateway/log.ts", import.meta.url).href,
    )
  };
jsonLog({ event: "one", n: 1 });
jsonLog({ event: "two", text: "a\\nb" });
flushLog();`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.deepEqual(new TextDecoder().decode(out.stderr), "");
  assert.deepEqual(
    new TextDecoder().decode(out.stdout),
    '{"event":"one","n":1}\n{"event":"two","text":"a\\nb"}\n',
  );
});

Deno.test("jsonLog() through console (Deno Deploy, OpenTelemetry on): one console.log call per record, as it is made", async () => {
  const script = `import { jsonLog, logThroughConsole } from ${
    JSON.stringify(new URL("../../gateway/log.ts", import.meta.url).href)
  };
const calls = [];
console.log = (...args) => calls.push(args);
logThroughConsole(true);
jsonLog({ event: "one", n: 1 });
jsonLog({ event: "two" });
Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(calls)));`;
  const out = await new Deno.Command(Deno.execPath(), { args: ["eval", script], stdout: "piped" })
    .output();
  assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), [
    ['{"event":"one","n":1}'],
    ['{"event":"two"}'],
  ]);
});
