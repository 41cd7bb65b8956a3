import assert from "node:assert/strict";
import { casUpdate } from "../../kv/mod.ts";
import { withMemoryKv } from "../support/kv.ts";

Deno.test("casUpdate: concurrent updates of one record all land, none overwriting another", async () => {
  await withMemoryKv(async (kv) => {
    const key = ["counter"];
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        casUpdate<number, number>(kv, key, (n) => {
          const next = (n ?? 0) + 1;
          return { write: next, result: next };
        }, { attempts: 50 })),
    );
    assert(results.every((r) => r.ok));
    assert.equal((await kv.get<number>(key)).value, 20);
    const seen = results.map((r) => r.ok ? r.result : -1).sort((a, b) => a - b);
    assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i + 1), "each saw its own turn");
  });
});

Deno.test("casUpdate: a step that decides not to write writes nothing; a record that keeps changing gives up after its attempts", async () => {
  await withMemoryKv(async (kv) => {
    const key = ["record"];
    await kv.set(key, 1);
    const untouched = await casUpdate<number, string>(kv, key, () => ({ done: "no change" }));
    assert.deepEqual(untouched, { ok: true, result: "no change" });
    const before = (await kv.get(key)).versionstamp;
    let turns = 0;
    const contended = await casUpdate<number, void>(kv, key, (n) => {
      turns++;
      // Another writer changes the record between every read and commit.
      kv.set(key, (n ?? 0) + 100);
      return { write: -1, result: undefined };
    }, { attempts: 3 });
    assert.deepEqual(contended, { ok: false });
    assert.equal(turns, 3);
    assert.notEqual((await kv.get<number>(key)).value, -1, "the stale write never landed");
    assert.notEqual((await kv.get(key)).versionstamp, before);
  });
});

Deno.test("casUpdate: alsoRead hands the step other records of the same read; only the key is checked", async () => {
  await withMemoryKv(async (kv) => {
    await kv.set(["limit"], 3);
    const seen: unknown[] = [];
    const result = await casUpdate<number, number>(kv, ["count"], (n, [limit]) => {
      seen.push(limit.value);
      const next = (n ?? 0) + 1;
      return next > (limit.value as number) ? { done: -1 } : { write: next, result: next };
    }, { alsoRead: [["limit"]] });
    assert.deepEqual(result, { ok: true, result: 1 });
    assert.deepEqual(seen, [3]);
    await kv.set(["count"], 3);
    assert.deepEqual(
      await casUpdate<number, number>(
        kv,
        ["count"],
        (n, [limit]) =>
          (n ?? 0) + 1 > (limit.value as number)
            ? { done: -1 }
            : { write: (n ?? 0) + 1, result: 0 },
        {
          alsoRead: [["limit"]],
        },
      ),
      { ok: true, result: -1 },
    );
  });
});
