import { assertEquals } from "../support/assert.ts";
import { isoTime } from "../../gateway/mod.ts";

Deno.test("jsonLog() writes a record JSON cannot encode as a line saying so", async () => {
  const script = `import { jsonLog } from ${
    JSON.stringify(new URL("../../gateway/log.ts", import.meta.url).href)
  };
const cyclic = { event: "loop" }; cyclic.self = cyclic;
jsonLog(cyclic);
jsonLog({ event: "after" });`;
  const out = await new Deno.Command(Deno.execPath(), { args: ["eval", script], stdout: "piped" })
    .output();
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(lines[0].event, "log_line_unencodable");
  assertEquals(lines[1], { event: "after" });
});

Deno.test("isoTime() matches Date#toISOString", () => {
  const cases = [0, 7, 1_700_000_000_123, 1_700_000_000_123, 1_700_000_000_124, 1.5, -1];
  // Every millisecond across a second boundary, and back again.
  for (let ms = 1_700_000_000_990; ms < 1_700_000_001_120; ms++) cases.push(ms);
  cases.push(1_700_000_000_999, 1_700_000_001_000, 253_402_300_799_999, 253_402_300_800_000);
  for (const ms of cases) assertEquals(isoTime(ms), new Date(ms).toISOString(), `at ${ms}`);
});

Deno.test("jsonLog() goes to standard output as whole JSON lines, one console call each", async () => {
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
