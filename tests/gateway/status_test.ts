/**
 * The status JSON and the Prometheus metrics, in process: who may see them,
 * what they say after the upstream answered 429 and 401, that they agree
 * with what the upstream saw, and that no secret is in them.
 */
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import type { Gateway } from "../../gateway/mod.ts";
import { keyId } from "../../keys/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import { chatRequest, fakeUpstream, inProcessGateway, jsonAnswer } from "../support/in_process.ts";

const METRICS_TOKEN = "scraper-token-0123456789";
const OK = { id: "c", choices: [{ message: { role: "assistant", content: "hi" } }] };

async function setup(answer: (key: string | undefined) => Response) {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  const upstream = fakeUpstream(answer);
  const gateway = await inProcessGateway(
    {
      services: {
        openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 10 },
      },
      maxRetries: 1,
    },
    { OPENAI_API_KEYS: "sk-a-secret-key,sk-b-secret-key", METRICS_TOKEN },
    { kv, clock, fetch: upstream.fetch, random: () => 0.5 },
  );
  return {
    clock,
    gateway,
    calls: upstream.calls,
    async [Symbol.asyncDispose]() {
      await gateway.close();
      kv.close();
    },
  };
}

function get(g: Gateway, path: string, credential?: string): Promise<Response> {
  return g.handler(
    new Request(`http://gw${path}`, {
      headers: credential ? { authorization: `Bearer ${credential}` } : {},
    }),
  );
}

interface Family {
  name: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string>; count?: string }[];
}

/** The metrics text, parsed by a real Prometheus text parser, by family name. */
async function scrape(g: Gateway, credential: string): Promise<Map<string, Family>> {
  const r = await get(g, "/_kvgate/metrics", credential);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") ?? "", /text\/plain/);
  const text = await r.text();
  assertNoSecret(text);
  return new Map((parsePrometheus(text) as Family[]).map((f) => [f.name, f]));
}

function sum(f: Family | undefined, where: Record<string, string> = {}): number {
  return (f?.metrics ?? []).filter((m) =>
    Object.entries(where).every(([k, v]) => m.labels?.[k] === v)
  ).reduce((n, m) => n + Number(m.value), 0);
}

function assertNoSecret(text: string): void {
  for (const secret of [PASSWORD, METRICS_TOKEN, "sk-a-secret-key", "sk-b-secret-key"]) {
    assert(!text.includes(secret), "a secret in the output");
  }
}

Deno.test("status and metrics: nginx's 404 to anyone without the password; the metrics token reads the metrics only", async () => {
  await using t = await setup(() => jsonAnswer(200, OK));
  for (const path of ["/_kvgate/status", "/_kvgate/metrics"]) {
    for (const cred of [undefined, "wrong-token-0123456789"]) {
      const r = await get(t.gateway, path, cred);
      assert.equal(r.status, 404);
      const text = await r.text();
      assert.match(text, /nginx/);
      assert.doesNotMatch(text, /kvgate/);
    }
  }
  const status = await get(t.gateway, "/_kvgate/status", METRICS_TOKEN);
  assert.equal(status.status, 404, "the scraper's token does not open the status");
  await status.body?.cancel();
  assert.equal((await scrape(t.gateway, METRICS_TOKEN)).size > 0, true);
  assert.equal((await scrape(t.gateway, PASSWORD)).size > 0, true);
});

Deno.test("status and metrics: a key answered 429 shows as cooling, one answered 401 as disabled with the reason; counts agree with the upstream", async () => {
  let answers: Record<string, number[]> = { "sk-a-secret-key": [429], "sk-b-secret-key": [] };
  await using t = await setup((key) => {
    const status = answers[key!]?.shift() ?? 200;
    return status === 200 ? jsonAnswer(200, OK) : new Response(
      '{"error":{"message":"no"}}',
      { status, headers: { "retry-after": "30", "content-type": "application/json" } },
    );
  });
  for (let i = 0; i < 3; i++) {
    const r = await settle(t.clock, t.gateway.handler(chatRequest()));
    assert.equal(r.status, 200);
    await r.body?.cancel();
  }
  const statusOf = async () => {
    await t.clock.advance(1100); // the snapshot is at most a second old
    const r = await get(t.gateway, "/_kvgate/status", PASSWORD);
    const text = await r.text();
    assertNoSecret(text);
    return JSON.parse(text);
  };
  const a = await keyId("sk-a-secret-key"), b = await keyId("sk-b-secret-key");
  let s = await statusOf();
  const keys = (st: typeof s) =>
    Object.fromEntries(
      st.services.openai.keys.map((k: { id: string }) => [k.id, k]),
    ) as Record<
      string,
      {
        state: string;
        reason?: string;
        lastStatus?: number;
        answers: number;
        today?: { requests: number };
      }
    >;
  assert.equal(keys(s)[a].state, "cooling");
  assert.equal(keys(s)[a].reason, "rate_limited");
  assert.equal(keys(s)[a].lastStatus, 429);
  assert.equal(typeof (keys(s)[a] as { since?: string }).since, "string", "since when it rests");
  assert.deepEqual(s.services.openai.queuedByTeam, {});
  assert.equal(keys(s)[b].state, "active");
  assert.equal(s.services.openai.limits.rps, 100);
  assert.equal(typeof s.services.openai.bucketTokens, "number");
  assert(s.instances.length >= 1);
  // The second 401 answers the probe that confirms the key (nothing of the client in it).
  answers = { "sk-a-secret-key": [], "sk-b-secret-key": [401, 401] };
  const r = await settle(t.clock, t.gateway.handler(chatRequest()));
  await r.body?.cancel();
  await t.gateway.runtimes.get("openai")!.pool.settled();
  s = await statusOf();
  assert.equal(keys(s)[b].state, "disabled");
  assert.equal(keys(s)[b].reason, "unauthorized");

  // Each key's use today, from KV once the instance has added its counts (every 5 s).
  await t.clock.advance(5100);
  s = await statusOf();
  // Requests, not the probe of a suspect key (a GET of the model list, not counted as an attempt).
  const callsTo = (k: string) =>
    t.calls.filter((c) => c.key === k && c.path.endsWith("/chat/completions")).length;
  assert.equal(keys(s)[a].today?.requests, callsTo("sk-a-secret-key"));
  assert.equal(keys(s)[b].today?.requests, callsTo("sk-b-secret-key"));
  const m = await scrape(t.gateway, PASSWORD);
  const upstream = m.get("kvgate_upstream_responses_total");
  const attempts = t.calls.filter((c) => c.path.endsWith("/chat/completions")).length;
  assert.equal(sum(upstream), attempts, "every upstream answer to a request counted");
  assert.equal(sum(upstream, { status: "429" }), 1);
  assert.equal(sum(upstream, { status: "401", key: b }), 1);
  assert.equal(sum(m.get("kvgate_requests_total"), { service: "openai", status: "200" }), 4);
  assert.equal(sum(m.get("kvgate_retries_total"), { reason: "rate_limited" }), 1);
  assert.equal(sum(m.get("kvgate_keys"), { state: "disabled" }), 1);
  assert.equal(m.get("kvgate_queue_wait_seconds")?.type, "HISTOGRAM");
  assert.equal(m.get("kvgate_kv_degraded")?.metrics[0].value, "0");
});

Deno.test("actions: re-enable a disabled key, pause and resume a service; each holds on another instance within 1 s", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  let refuseA = true;
  const upstream = fakeUpstream((key) =>
    key === "sk-a-secret-key" && refuseA
      ? jsonAnswer(401, { error: { message: "bad key" } })
      : jsonAnswer(200, OK)
  );
  const make = () =>
    inProcessGateway(
      { services: { openai: { target: "http://upstream.test", rps: 100, burst: 100 } } },
      { OPENAI_API_KEYS: "sk-a-secret-key,sk-b-secret-key" },
      { kv, clock, fetch: upstream.fetch, random: () => 0.5 },
    );
  const one = await make(), two = await make();
  const post = (g: Gateway, path: string) =>
    g.handler(
      new Request(`http://gw${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${PASSWORD}` },
      }),
    );
  const chat = async (g: Gateway) => {
    const r = await settle(clock, g.handler(chatRequest()));
    await r.body?.cancel();
    return r;
  };
  try {
    const a = await keyId("sk-a-secret-key");
    assert.equal((await chat(one)).status, 200, "key a refused, key b answered");
    refuseA = false;
    await clock.advance(1100);
    upstream.calls.length = 0;
    for (let i = 0; i < 4; i++) await chat(two);
    assert(upstream.calls.every((c) => c.key === "sk-b-secret-key"), "a is disabled everywhere");
    const enabled = await post(two, `/_kvgate/keys/openai/${a}/enable`);
    assert.equal(enabled.status, 200);
    assert.deepEqual(await enabled.json(), { service: "openai", key: a, state: "active" });
    await clock.advance(1100);
    upstream.calls.length = 0;
    for (let i = 0; i < 4; i++) await chat(one);
    assert(upstream.calls.some((c) => c.key === "sk-a-secret-key"), "a is back on the other one");
    const unknown = await post(one, "/_kvgate/keys/openai/nokey/enable");
    assert.equal(unknown.status, 404);
    await unknown.body?.cancel();

    assert.equal((await post(one, "/_kvgate/services/openai/pause")).status, 200);
    await clock.advance(1100);
    const paused = await settle(clock, two.handler(chatRequest()));
    assert.equal(paused.status, 503);
    assert.equal((await paused.json()).error.code, "service_paused");
    assert.equal((await post(two, "/_kvgate/services/openai/resume")).status, 200);
    await clock.advance(1100);
    assert.equal((await chat(one)).status, 200, "resumed on the other instance");
    const stranger = await one.handler(
      new Request("http://gw/_kvgate/services/openai/pause", { method: "POST" }),
    );
    assert.equal(stranger.status, 404, "nginx's 404 without the password");
    await stranger.body?.cancel();
  } finally {
    await one.close();
    await two.close();
    kv.close();
  }
});

Deno.test("status: a key's requests today against its rpd, a team's use, waiting and 429s", async () => {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  const upstream = fakeUpstream(() => jsonAnswer(200, OK));
  const TEAM = "team-token-status-0123456789";
  const gateway = await inProcessGateway(
    {
      services: {
        openai: {
          target: "http://upstream.test",
          rps: 100,
          burst: 100,
          maxConn: 10,
          keyQuota: { rpd: 50 },
        },
      },
      teams: { t: { token: TEAM, daily: { requests: 1 } } },
    },
    { OPENAI_API_KEYS: "sk-a-secret-key" },
    { kv, clock, fetch: upstream.fetch, random: () => 0.5 },
  );
  try {
    const asTeam = () =>
      new Request("http://gw/openai/v1/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${TEAM}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "m", messages: [] }),
      });
    const first = await settle(clock, gateway.handler(asTeam()));
    assert.equal(first.status, 200);
    await first.body?.cancel();
    const second = await settle(clock, gateway.handler(asTeam()));
    assert.equal(second.status, 429, "past the team's budget");
    await second.body?.cancel();
    await clock.advance(2100);
    const r = await get(gateway, "/_kvgate/status", PASSWORD);
    const s = await r.json();
    const [key] = s.services.openai.keys;
    assert.equal(key.today.rpd, 50);
    assert.equal(key.today.requests, 1);
    assert.deepEqual(s.services.openai.keyQuota, { rpd: 50 });
    const [team] = s.teams;
    assert.equal(team.name, "t");
    assert.equal(team.usageToday.requests, 1);
    assert.equal(team.refusedHere, 1);
    assert.equal(team.waitingHere, 0);
    const text = JSON.stringify(s);
    assert(!text.includes(TEAM), "no team token in the status");
  } finally {
    await gateway.close();
    kv.close();
  }
});
