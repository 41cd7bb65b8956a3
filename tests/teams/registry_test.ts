/**
 * TeamRegistry on `:memory:` KV and the fake clock: teams made, changed and
 * removed through the admin API on one instance hold on every instance
 * within `refreshMs` (a request there finding its view that old waits for
 * the teams to be read); KV keeps token hashes only; config teams are fixed.
 */
import assert from "node:assert/strict";
import {
  type Team,
  TeamChangeError,
  TeamRegistry,
  type TeamRegistryOptions,
  tokenSha256,
} from "../../teams/mod.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { faultyKv } from "../support/faulty_kv.ts";
import { withMemoryKv } from "../support/kv.ts";

const context = { services: { groq: { rps: 10, burst: 10, maxConn: 4 } } };
const CONFIG_TOKEN = "config-team-token-0123456789";
const configTeam: Team = {
  name: "ops",
  source: "config",
  tokenSha256: tokenSha256(CONFIG_TOKEN),
  weight: 1,
  limits: {},
  daily: {},
};

function registry(kv: Deno.Kv, clock: FakeClock, extra: Partial<TeamRegistryOptions> = {}) {
  return new TeamRegistry([configTeam], {
    kv,
    clock,
    context,
    refreshMs: 1000,
    watch: false,
    ...extra,
  });
}

const kind = (k: TeamChangeError["kind"]) => (e: unknown) =>
  e instanceof TeamChangeError && e.kind === k;

Deno.test("TeamRegistry: a team made on one instance is known there at once, and on another once a request there finds its view refreshMs old", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const here = registry(kv, clock);
    const there = registry(kv, clock);
    await here.start();
    await there.start();
    const { team, token } = await here.create({ name: "translate", weight: 3 });
    assert.equal(team.weight, 3);
    assert.equal(here.byHash(tokenSha256(token))?.name, "translate");
    assert.equal(there.byHash(tokenSha256(token)), undefined, "not yet");
    assert.equal(there.fresh(), undefined, "a view younger than refreshMs is acted on");
    await clock.advance(1000);
    const reading = there.fresh();
    assert.ok(reading instanceof Promise, "refreshMs old: the request waits for the read");
    await reading;
    assert.equal(there.byHash(tokenSha256(token))?.name, "translate");
    assert.deepEqual(there.list().map((t) => t.name), ["ops", "translate"], "config teams first");
    here.close();
    there.close();
  });
});

Deno.test("TeamRegistry: KV holds the token's SHA-256, never the token", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const teams = registry(kv, clock);
    const { token } = await teams.create({ name: "translate" });
    let seen = "";
    for await (const e of kv.list({ prefix: [] })) {
      seen += Deno.inspect(e.value, { depth: 9 }) + "\n";
    }
    assert.ok(seen.includes(tokenSha256(token)));
    assert.ok(!seen.includes(token));
    teams.close();
  });
});

Deno.test("TeamRegistry: a rotated token stops at once here and within a refresh there; the new one works", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const here = registry(kv, clock);
    const there = registry(kv, clock);
    await there.start();
    const first = await here.create({ name: "translate" });
    await clock.advance(1000);
    const second = await here.rotate("translate");
    assert.equal(here.byHash(tokenSha256(first.token)), undefined);
    assert.equal(here.byHash(tokenSha256(second.token))?.name, "translate");
    await clock.advance(1000);
    await there.fresh();
    assert.equal(there.byHash(tokenSha256(first.token)), undefined);
    assert.equal(there.byHash(tokenSha256(second.token))?.name, "translate");
    here.close();
    there.close();
  });
});

Deno.test("TeamRegistry: patch changes settings; delete removes; unknown names and clashes are told apart", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const teams = registry(kv, clock);
    await teams.create({ name: "translate" });
    assert.equal((await teams.patch("translate", { weight: 5 })).weight, 5);
    await assert.rejects(teams.create({ name: "translate" }), kind("clash"));
    await teams.delete("translate");
    assert.equal(teams.get("translate"), undefined);
    await assert.rejects(teams.delete("translate"), kind("unknown"));
    await assert.rejects(teams.patch("translate", { weight: 2 }), kind("unknown"));
    teams.close();
  });
});

Deno.test("TeamRegistry: a config team cannot be made, changed, rotated or removed through the API", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const teams = registry(kv, clock);
    await assert.rejects(teams.create({ name: "ops" }), kind("read_only"));
    await assert.rejects(teams.patch("ops", { weight: 2 }), kind("read_only"));
    await assert.rejects(teams.rotate("ops"), kind("read_only"));
    await assert.rejects(teams.delete("ops"), kind("read_only"));
    assert.equal(teams.byHash(tokenSha256(CONFIG_TOKEN))?.name, "ops");
    teams.close();
  });
});

Deno.test("TeamRegistry: a bad field is refused before anything is written", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const teams = registry(kv, clock);
    await assert.rejects(teams.create({ name: "translate", services: ["nope"] }));
    await assert.rejects(teams.create({ name: "Bad Name" }));
    let records = 0;
    for await (const _ of kv.list({ prefix: [] })) records++;
    assert.equal(records, 0);
    teams.close();
  });
});

Deno.test("TeamRegistry: with KV failing a refresh keeps the last view", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const faults = { latencyMs: 0, failing: false, ops: 0 };
    const maker = registry(kv, clock);
    const { token } = await maker.create({ name: "translate" });
    const teams = registry(faultyKv(kv, faults), clock, { call: { attempts: 1 } });
    await teams.refresh();
    faults.failing = true;
    await assert.rejects(teams.refresh());
    assert.equal(teams.byHash(tokenSha256(token))?.name, "translate");
    maker.close();
    teams.close();
  });
});

Deno.test("TeamRegistry: an instance that no request asks reads nothing; the first to come after a long quiet reads before it is decided", async () => {
  await withMemoryKv(async (kv) => {
    const clock = new FakeClock();
    const faults = { latencyMs: 0, failing: false, ops: 0 };
    const maker = registry(kv, clock);
    const teams = registry(faultyKv(kv, faults, clock), clock);
    const { token } = await maker.create({ name: "translate" });
    await teams.start();
    faults.ops = 0;
    await clock.advance(600_000);
    assert.equal(faults.ops, 0, "ten quiet minutes: no KV call");
    await maker.delete("translate");
    assert.equal(teams.byHash(tokenSha256(token))?.name, "translate", "what it knew");
    await teams.fresh();
    assert.equal(faults.ops, 1, "one read");
    assert.equal(
      teams.byHash(tokenSha256(token)),
      undefined,
      "the deletion, learned before deciding",
    );
    maker.close();
    teams.close();
  });
});

Deno.test("TeamRegistry: refreshMs must be positive", () => {
  assert.throws(
    () =>
      new TeamRegistry([], {
        kv: {} as Deno.Kv,
        clock: new FakeClock(),
        context,
        refreshMs: 0,
        watch: false,
      }),
    (e: unknown) => e instanceof RangeError && e.message.includes("refreshMs"),
  );
});

/** A KV whose lists take their snapshot at once and hand it over when `release()` is called. */
function heldLists(kv: Deno.Kv) {
  const held: (() => void)[] = [];
  const wrapped = new Proxy(kv, {
    get(target, prop) {
      if (prop !== "list") return Reflect.get(target, prop, target).bind?.(target);
      return (selector: Deno.KvListSelector, options?: Deno.KvListOptions) =>
        (async function* () {
          const snapshot = [];
          for await (const e of target.list(selector, options)) snapshot.push(e);
          await new Promise<void>((r) => held.push(r));
          yield* snapshot;
        })();
    },
  });
  return { kv: wrapped, release: () => held.splice(0).forEach((r) => r()) };
}

Deno.test("TeamRegistry: a read that began before a team was deleted or its token rotated here, and ends after, does not bring the old token back", async () => {
  await withMemoryKv(async (base) => {
    const clock = new FakeClock();
    const { kv, release } = heldLists(base);
    const here = registry(kv, clock);
    const { token } = await here.create({ name: "translate" });
    const { token: other } = await here.create({ name: "agents" });
    const reading = here.refresh(); // its snapshot holds both teams
    await new Promise((r) => setTimeout(r, 0));
    const rotated = await here.rotate("translate");
    await here.delete("agents");
    release();
    await reading;
    assert.equal(here.byHash(tokenSha256(token)), undefined, "the rotated token stays refused");
    assert.equal(here.byHash(tokenSha256(other)), undefined, "the deleted team stays gone");
    assert.equal(here.byHash(tokenSha256(rotated.token))?.name, "translate");
    const again = here.refresh();
    await new Promise((r) => setTimeout(r, 0));
    release();
    await again;
    assert.equal(
      here.byHash(tokenSha256(rotated.token))?.name,
      "translate",
      "and a new read agrees",
    );
  });
});

Deno.test("TeamRegistry: watched, a change told by the watch is read strongly (a replica may not have it yet); other reads are eventual", async () => {
  await withMemoryKv(async (base) => {
    const clock = new FakeClock();
    const reads: (string | undefined)[] = [];
    const kv = new Proxy(base, {
      get(target, prop) {
        if (prop !== "list") return Reflect.get(target, prop, target).bind?.(target);
        return (selector: Deno.KvListSelector, options?: Deno.KvListOptions) => {
          reads.push(options?.consistency);
          return target.list(selector, options);
        };
      },
    });
    const admin = registry(base, clock);
    const there = registry(kv, clock, { watch: true });
    await there.start();
    assert.deepEqual(reads, ["eventual"], "the first read, at start");
    there.resume(); // the watch, as the lifecycle starts it
    for (let i = 0; i < 50 && reads.length < 2; i++) {
      await clock.advance(300);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(reads, ["eventual", "eventual"], "its first word: a read, no change known");
    const { token } = await admin.create({ name: "translate" });
    for (let i = 0; i < 50 && there.byHash(tokenSha256(token)) === undefined; i++) {
      await clock.advance(300);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(there.byHash(tokenSha256(token))?.name, "translate", "heard and read");
    assert.equal(reads.at(-1), "strong", "the read the watch asked for");
    there.close();
  });
});
