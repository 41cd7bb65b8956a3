import assert from "node:assert/strict";
import { keyDayUsageKey, pruneOldDays, teamUsageKey } from "../../kv/mod.ts";

Deno.test("L12: day records of teams and keys older than 8 days are pruned; the last week stays", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = Date.UTC(2026, 11, 20, 12);
    const old = "2026-12-01", recent = "2026-12-15";
    const keys = [
      teamUsageKey("alpha", old, "requests"),
      teamUsageKey("alpha", recent, "requests"),
      keyDayUsageKey("groq", "k_1", old, "requests"),
      keyDayUsageKey("groq", "k_1", recent, "requests"),
      // The key_day records earlier versions kept.
      ["key_day", "groq", "k_1", old, "tokens"],
      ["key_day", "groq", "k_1", recent, "tokens"],
    ];
    for (const key of keys) await kv.atomic().sum(key, 5n).commit();
    assert.equal(await pruneOldDays(kv, now), 3);
    const left = (await Array.fromAsync(kv.list({ prefix: [] }))).map((e) => e.key.join("/"));
    assert.deepEqual(left.sort(), [
      "key_day/groq/k_1/2026-12-15/tokens",
      "key_usage/groq/k_1/2026-12-15/requests",
      "team_usage/alpha/2026-12-15/requests",
    ]);
  } finally {
    kv.close();
  }
});
