/**
 * Keys paced from the provider's headers alone, over a long run on the
 * fake clock (2 minutes of fake time: about a minute of real time, so it
 * runs with the floods).
 */
import assert from "node:assert/strict";
import { keyId } from "../../keys/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { chatRequest } from "../support/in_process.ts";
import { OK, type Setup, setup } from "../support/key_pacing_setup.ts";

/**
 * A provider whose keys are token buckets on the fake clock (capacity
 * `capacity`, refilled at `perMinute` a minute), answering with OpenAI's
 * rate-limit headers, 429 past the bucket.
 */
function bucketProvider(clock: FakeClock, capacity: number, perMinute: number) {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const refused: number[] = [];
  const served: number[] = [];
  const answer = (key: string | undefined) => {
    const now = clock.now();
    const b = buckets.get(key!) ?? { tokens: capacity, at: now };
    b.tokens = Math.min(capacity, b.tokens + ((now - b.at) * perMinute) / 60_000);
    b.at = now;
    buckets.set(key!, b);
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    const untilFull = ((capacity - b.tokens) / perMinute) * 60_000;
    const headers = {
      "content-type": "application/json",
      "x-ratelimit-limit-requests": String(capacity),
      "x-ratelimit-remaining-requests": String(Math.floor(b.tokens)),
      "x-ratelimit-reset-requests": `${(untilFull / 1000).toFixed(2)}s`,
    };
    (ok ? served : refused).push(now);
    return ok
      ? new Response(JSON.stringify(OK), { headers })
      : new Response(JSON.stringify({ error: { message: "Rate limit reached" } }), {
        status: 429,
        headers: { ...headers, "retry-after": "3" },
      });
  };
  return { answer, refused, served };
}

/** Fires one request every `everyMs` of fake time for `forMs`; resolves with the statuses. */
async function openLoop(
  t: Setup,
  everyMs: number,
  forMs: number,
  request: () => Request = () => chatRequest(),
): Promise<number[]> {
  const answers: Promise<number>[] = [];
  for (let at = 0; at < forMs; at += everyMs) {
    answers.push(
      t.gateway.handler(request()).then(async (r) => {
        await r.body?.cancel();
        return r.status;
      }),
    );
    await t.clock.advance(everyMs);
  }
  return await settle(t.clock, Promise.all(answers), 250, 120_000);
}

Deno.test("headers only: after the first answers, no 429 for the rest of a 2-minute run at twice the allowed rate", async () => {
  const clock = new FakeClock();
  const provider = bucketProvider(clock, 20, 20);
  await using t = await setup(
    provider.answer,
    { rateLimitHeaders: "openai" },
    "sk-a,sk-b",
    { queueTimeoutMs: 60_000 },
    { kv: await Deno.openKv(":memory:"), clock },
  );
  // 2 keys × 20/min allowed; twice that is 80/min: one request every 750 ms, for 2 minutes.
  const t0 = clock.now();
  const statuses = await openLoop(t, 750, 120_000);
  const firstAnswers = provider.served.slice(0, 2).at(-1)!;
  const late429s = provider.refused.filter((at) => at > firstAnswers);
  assert.deepEqual(late429s, [], "no 429 after each key's first answer");
  const inRun = provider.served.filter((at) => at < t0 + 120_000).length;
  // What the provider allows in 2 min: 2 × (20 at once + 40 refilled) = 120; the rate part alone is 80.
  assert(inRun >= 0.9 * 80, `served ${inRun} in the run`);
  assert.equal(statuses.filter((s) => s === 200).length, provider.served.length);
  const pace = t.gateway.runtimes.get("openai")!.pacing!.paceOf(await keyId("sk-a"));
  assert.equal(pace?.rpm, 20, "the key is paced at the limit its headers state");
});
