/**
 * Queues fair too (security review M8): one team's flood fills the queue,
 * but never turns another team's request into an immediate
 * `gateway_queue_full`. The policy alone, each queue that applies it, and
 * the gateway in process.
 */
import assert from "node:assert/strict";
import { FairQueue, MemoryCapacityStore, queueVictim, ScopeLimiter } from "../../limiter/mod.ts";
import { FairGate, LocalDemandBoard } from "../../teams/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { inProcessGateway, jsonAnswer } from "../support/in_process.ts";

Deno.test("queueVictim(): a newcomer under its weighted share takes the place of the team furthest over its own", () => {
  const flood = { team: "alpha", waiting: 20, weight: 1 };
  assert.equal(queueVictim([flood], "beta", 1, 20), "alpha", "beta holds 0 of its 10");
  assert.equal(queueVictim([flood], "alpha", 1, 20), undefined, "alpha's own newcomer is refused");
  assert.equal(
    queueVictim(
      [{ team: "alpha", waiting: 10, weight: 1 }, { team: "beta", waiting: 10, weight: 1 }],
      "beta",
      1,
      20,
    ),
    undefined,
    "beta holds its share already",
  );
  // Weighted: gamma (3) is owed 15 of 20 against alpha (1); with 12 it may still come in.
  const places = [{ team: "alpha", waiting: 8, weight: 1 }, {
    team: "gamma",
    waiting: 12,
    weight: 3,
  }];
  assert.equal(queueVictim(places, "gamma", 3, 20), "alpha");
  assert.equal(queueVictim([{ team: "alpha", waiting: 5, weight: 1 }], "beta", 1, 5), "alpha");
});

Deno.test("FairGate: a full gate makes room for another team's request with the flooding team's newest waiter", async () => {
  const clock = new FakeClock();
  const gate = new FairGate({
    rate: 1,
    burst: 1,
    board: new LocalDemandBoard(),
    clock,
    queueLimit: 10,
  });
  const alpha: Promise<unknown>[] = [];
  for (let i = 0; i < 11; i++) {
    const r = gate.enter("alpha", 1, false, clock.now() + 60_000);
    alpha.push(r instanceof Promise ? r : Promise.resolve(r));
  }
  assert.deepEqual(
    gate.enter("beta", 1, false, clock.now() + 60_000),
    { ok: true },
    "a newcomer's first",
  );
  const beta = gate.enter("beta", 1, false, clock.now() + 60_000);
  assert.ok(beta instanceof Promise, "beta's second waits for its turn rather than being refused");
  const refused = await Promise.race([
    alpha.at(-1)!,
    new Promise((r) => setTimeout(() => r("pending"), 10)),
  ]);
  assert.deepEqual(
    (refused as { ok: boolean; reason: string }).reason,
    "queue_full",
    "alpha's newest gave its place",
  );
  const passed = await settle(clock, beta as Promise<{ ok: boolean }>, 100, 30_000);
  assert.equal(passed.ok, true);
  gate.close();
  await Promise.allSettled(alpha);
});

Deno.test("ScopeLimiter with a FairQueue: a full slot queue makes room for another team's waiter with the flood's newest", async () => {
  const clock = new FakeClock();
  const l = { rps: 100, burst: 100, maxConn: 1 };
  const limiter = new ScopeLimiter(l, {
    store: new MemoryCapacityStore(l, clock),
    clock,
    queueLimit: 5,
    slotQueue: new FairQueue(),
  });
  const wait = (team: string) => ({ deadline: clock.now() + 60_000, team, weight: 1 });
  const held = await limiter.acquireSlot(wait("alpha"));
  assert.equal(held.ok, true);
  const alpha = Array.from({ length: 6 }, () => limiter.acquireSlot(wait("alpha")));
  const sixth = await alpha[5];
  assert.deepEqual(
    sixth.ok ? "granted" : sixth.reason,
    "queue_full",
    "alpha's own flood is bounded",
  );
  const beta = limiter.acquireSlot(wait("beta"));
  const gave = await alpha[4];
  assert.deepEqual(
    gave.ok ? "granted" : gave.reason,
    "queue_full",
    "alpha's newest gave its place",
  );
  if (held.ok) held.release();
  // Turns alternate between the two teams: beta is served by the second grant at the latest.
  const next = await Promise.race([
    alpha[0].then((g) => ({ team: "alpha", g })),
    beta.then((g) => ({ team: "beta", g })),
  ]);
  if (next.team === "alpha" && next.g.ok) next.g.release();
  const b = await settle(clock, beta, 10, 1000);
  assert.equal(b.ok, true);
  await limiter.close();
  await Promise.allSettled(alpha);
});

Deno.test("M8: a team flooding a service's queue never gets another team's single request gateway_queue_full", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  // As the review ran it: maxConn 1, queueLimit 20, answers that take 3 s, a 4 s deadline.
  const fetch = () =>
    new Promise<Response>((r) => clock.setTimeout(() => r(jsonAnswer(200, { ok: true })), 3000));
  const gateway = await inProcessGateway(
    {
      queueLimit: 20,
      queueTimeoutMs: 4000,
      teams: {
        alpha: { token: "alpha-token-0123456789ab" },
        beta: { token: "beta-token-0123456789abc" },
      },
      services: { openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 1 } },
    },
    { OPENAI_API_KEYS: "sk-a" },
    { kv, clock, fetch: fetch as typeof globalThis.fetch },
  );
  const chat = (token: string) =>
    gateway.handler(
      new Request("http://gw/openai/v1/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "m", messages: [] }),
      }),
    ).then(async (r) => ({ status: r.status, body: await r.text() }));
  try {
    let refusedSoFar = 0;
    const flood = Array.from(
      { length: 40 },
      () =>
        chat("alpha-token-0123456789ab").then((a) => {
          if (a.status === 429) refusedSoFar++;
          return a;
        }),
    );
    // The flood has filled every queue it may (its overflow is already refused) before beta comes.
    for (let i = 0; i < 100 && refusedSoFar === 0; i++) await clock.advance(1);
    assert.ok(refusedSoFar > 0, "the flood fills what it may");
    await clock.advance(500); // the instances agree on shares: alpha is held back by now
    const beta = chat("beta-token-0123456789abc");
    const answer = await settle(clock, beta, 100, 60_000);
    assert.ok(!answer.body.includes("gateway_queue_full"), answer.body);
    assert.equal(answer.status, 200, "beta's turn comes before its deadline");
    const alpha = await settle(clock, Promise.all(flood), 100, 60_000);
    const refused = alpha.filter((a) => a.status === 429).length;
    assert.ok(refused > 0, "the flood itself is still bounded by queueLimit");
    assert.ok(alpha.every((a) => a.status === 200 || a.status === 429));
  } finally {
    await gateway.close();
    kv.close();
  }
});
