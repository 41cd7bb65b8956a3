/**
 * Reads that may be a moment old are eventual (issue 22): the team list's
 * refresh and every read behind the status page and its chart. On Deno
 * Deploy an eventual read is served in the reader's region; a strong one
 * goes to the primary (~100 ms from `eu`).
 */
import assert from "node:assert/strict";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import { fakeUpstream, inProcessGateway, jsonAnswer } from "../support/in_process.ts";

/** A KV that records the consistency each read asked for, by the first part of the key read. */
function recordingKv(kv: Deno.Kv, reads: string[]): Deno.Kv {
  return new Proxy(kv, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (prop === "list") {
        return (selector: Deno.KvListSelector, options?: Deno.KvListOptions) => {
          const key = "prefix" in selector
            ? selector.prefix
            : (selector as { start: Deno.KvKey }).start;
          reads.push(`${String(key[0])}:${options?.consistency ?? "strong"}`);
          return target.list(selector, options);
        };
      }
      if (prop === "getMany") {
        return (keys: Deno.KvKey[], options?: { consistency?: Deno.KvConsistencyLevel }) => {
          reads.push(`${String(keys[0][0])}:${options?.consistency ?? "strong"}`);
          return target.getMany(keys, options);
        };
      }
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

Deno.test("the team list's read and the status page's reads are eventual", async () => {
  const clock = new FakeClock();
  const store = await Deno.openKv(":memory:");
  const reads: string[] = [];
  const gateway = await inProcessGateway(
    {
      teams: { alpha: { token: "alpha-token-0123456789abc" } },
      services: { openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 10 } },
    },
    { OPENAI_API_KEYS: "sk-a" },
    { kv: recordingKv(store, reads), clock, fetch: fakeUpstream(() => jsonAnswer(200, {})).fetch },
  );
  try {
    reads.length = 0;
    await clock.advance(2100); // the teams' view old enough for the status page to read it again
    const r = await settle(
      clock,
      gateway.handler(
        new Request("http://gw/_kvgate/status", {
          headers: { authorization: `Bearer ${PASSWORD}` },
        }),
      ),
    );
    assert.equal(r.status, 200);
    await r.body?.cancel();
    for (const what of ["team", "token_ledger", "instance", "minute_counts"]) {
      const seen = reads.filter((x) => x.startsWith(`${what}:`));
      assert.ok(seen.length > 0, `${what} was read (${reads})`);
      assert.deepEqual([...new Set(seen)], [`${what}:eventual`], `${what}: ${seen}`);
    }
  } finally {
    await gateway.close();
    store.close();
  }
});
