import { assertEquals } from "../support/assert.ts";
import { createJsonLog, isoTime } from "../../gateway/mod.ts";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("createJsonLog() writes lines of the same moment in one write, each a JSON line", async () => {
  const writes: string[] = [];
  const log = createJsonLog({ write: (t) => writes.push(t), flushMs: 10 });
  log.log({ a: 1 });
  log.log({ b: "two" });
  assertEquals(writes, [], "nothing written synchronously");
  await tick(30);
  assertEquals(writes, ['{"a":1}\n{"b":"two"}']);
  log.log({ c: 3 });
  await tick(30);
  assertEquals(writes[1], '{"c":3}', "a lone line goes out alone");
});

Deno.test("createJsonLog() writes at once when a batch is full, and flush() empties the queue", () => {
  const writes: string[] = [];
  const log = createJsonLog({ write: (t) => writes.push(t), maxBatch: 2, flushMs: 60_000 });
  log.log({ n: 1 });
  log.log({ n: 2 });
  log.log({ n: 3 });
  assertEquals(writes, ['{"n":1}\n{"n":2}']);
  log.flush();
  assertEquals(writes, ['{"n":1}\n{"n":2}', '{"n":3}']);
  log.flush();
  assertEquals(writes.length, 2, "nothing left to write");
});

Deno.test("isoTime() matches Date#toISOString", () => {
  const cases = [0, 7, 1_700_000_000_123, 1_700_000_000_123, 1_700_000_000_124, 1.5, -1];
  // Every millisecond across a second boundary, and back again.
  for (let ms = 1_700_000_000_990; ms < 1_700_000_001_120; ms++) cases.push(ms);
  cases.push(1_700_000_000_999, 1_700_000_001_000, 253_402_300_799_999, 253_402_300_800_000);
  for (const ms of cases) assertEquals(isoTime(ms), new Date(ms).toISOString(), `at ${ms}`);
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
  assertEquals(new TextDecoder().decode(out.stderr), "");
  assertEquals(
    new TextDecoder().decode(out.stdout),
    '{"event":"one","n":1}\n{"event":"two","text":"a\\nb"}\n',
  );
});
