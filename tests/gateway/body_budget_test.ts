/**
 * Memory bounded before admission (security review M7): request bodies held
 * by an instance count against one budget, and answers are read whole only
 * up to a cap.
 */
import assert from "node:assert/strict";
import { BodyBudget } from "../../gateway/stages/body_budget.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import { inProcessGateway, jsonAnswer } from "../support/in_process.ts";

const MiB = 1024 * 1024;

Deno.test("BodyBudget: takes what fits, refuses what does not, and gets it back", () => {
  const b = new BodyBudget(10);
  assert.equal(b.take(6), true);
  assert.equal(b.take(5), false, "nothing taken when it does not fit");
  assert.equal(b.held, 6);
  b.give(6);
  assert.equal(b.take(10), true);
  assert.throws(() => new BodyBudget(0), RangeError);
});

function post(bytes: number, token = PASSWORD): Request {
  const body = JSON.stringify({
    model: "m",
    messages: [{ role: "user", content: "x".repeat(bytes) }],
  });
  return new Request("http://gw/openai/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body,
  });
}

Deno.test("M7: bodies queued past the instance's budget get 429 gateway_busy at once; the budget comes back as requests end", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  let open!: () => void;
  const gate = new Promise<void>((r) => open = r);
  const fetch = async (_: RequestInfo | URL, init?: RequestInit) => {
    await gate;
    return jsonAnswer(200, { bytes: (init?.body as Uint8Array).byteLength });
  };
  const gateway = await inProcessGateway(
    {
      bodyBudgetBytes: 10 * MiB,
      maxBodyBytes: 8 * MiB,
      queueTimeoutMs: 3_600_000,
      services: { openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 1 } },
    },
    { OPENAI_API_KEYS: "sk-a" },
    { kv, clock, fetch: fetch as typeof globalThis.fetch },
  );
  try {
    const answers = [0, 1, 2, 3, 4].map(() => gateway.handler(post(3 * MiB)));
    // Three fit in 10 MiB (one upstream, two queued); the other two are refused at once.
    const refused = await settle(clock, Promise.all(answers.slice(3)), 1);
    for (const r of refused) {
      assert.equal(r.status, 429);
      assert.equal(r.headers.get("retry-after"), "1");
      assert.equal((await r.json()).error.code, "gateway_busy");
    }
    open();
    // Each answer read to its end: a relayed body holds the slot until then.
    const read = (r: Promise<Response>) => r.then(async (res) => (await res.text(), res.status));
    const served = await settle(clock, Promise.all(answers.slice(0, 3).map(read)), 1, 5000);
    assert.deepEqual(served, [200, 200, 200]);
    const again = [0, 1, 2].map(() => read(gateway.handler(post(3 * MiB))));
    const after = await settle(clock, Promise.all(again), 1, 5000);
    assert.deepEqual(after, [200, 200, 200], "the budget came back");
  } finally {
    await gateway.close();
    kv.close();
  }
});

Deno.test("M7: an answer read for its usage is held whole only up to 8 MiB; a larger one passes through as it comes, and the log says so", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  const big = JSON.stringify({ data: "y".repeat(9 * MiB), usage: { total_tokens: 7 } });
  // Chunked, with no content-length: its size is learned only by reading.
  const fetch = () =>
    Promise.resolve(
      new Response(
        new ReadableStream({
          start(c) {
            const bytes = new TextEncoder().encode(big);
            for (let at = 0; at < bytes.length; at += MiB) c.enqueue(bytes.subarray(at, at + MiB));
            c.close();
          },
        }),
        { headers: { "content-type": "application/json" } },
      ),
    );
  const logs: Record<string, unknown>[] = [];
  const gateway = await inProcessGateway(
    {
      teams: { counted: { token: "counted-token-0123456789", daily: { tokens: 1_000_000 } } },
      services: { openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 2 } },
    },
    { OPENAI_API_KEYS: "sk-a" },
    { kv, clock, fetch: fetch as typeof globalThis.fetch, logs },
  );
  try {
    const res = await settle(clock, gateway.handler(post(10, "counted-token-0123456789")));
    assert.equal(res.status, 200);
    const text = await settle(clock, res.text());
    assert.equal(text, big, "every byte, in order");
    assert.ok(logs.some((l) => l.event === "usage_unread" && l.reason === "too_large"));
  } finally {
    await gateway.close();
    kv.close();
  }
});
