/**
 * Teams in process: scope, own pacing, budgets, lanes and the admin API,
 * through `handler(new Request(…))` with an injected upstream and the fake clock.
 */
import assert from "node:assert/strict";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { dayAcrossInstances } from "../support/day_across.ts";
import { PASSWORD } from "../support/harness.ts";
import { gatewayOver, type InProcess, jsonAnswer } from "../support/in_process.ts";

const TRANSLATE = "translate-token-0123456789";

function setup(
  teams: Record<string, unknown>,
  answer: (req: Request) => Response | Promise<Response> = () => chatAnswer(10),
  settings: Record<string, unknown> = {},
  start = Date.UTC(2026, 10, 29, 12, 0, 0),
): Promise<InProcess> {
  return gatewayOver(
    (_, req) => answer(req),
    {
      queueTimeoutMs: 5000,
      ...settings,
      teams,
      services: {
        openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 10 },
        claude: { target: "http://claude.test", style: "anthropic" },
        gemini: { target: "http://gemini.test", style: "gemini" },
      },
    },
    { OPENAI_API_KEYS: "sk-a", CLAUDE_API_KEYS: "ck-a", GEMINI_API_KEYS: "gk-a" },
    { clock: new FakeClock(start) },
  );
}

function chatAnswer(totalTokens: number | undefined): Response {
  return jsonAnswer(200, {
    id: "c",
    choices: [{ message: { role: "assistant", content: "hi" } }],
    ...(totalTokens === undefined ? {} : { usage: { total_tokens: totalTokens } }),
  });
}

function chat(token: string, body: Record<string, unknown> = { model: "m" }, lane?: string) {
  return new Request("http://gw/openai/v1/chat/completions", {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      ...(lane ? { "x-kvgate-lane": lane } : {}),
    },
    body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], ...body }),
  });
}

function admin(method: string, path: string, body?: unknown, token = PASSWORD): Request {
  return new Request(`http://gw${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function send(t: InProcess, req: Request) {
  const res = await settle(t.clock, t.gateway.handler(req));
  const text = await res.text();
  return { res, status: res.status, body: text ? JSON.parse(text) : undefined };
}

const requestLines = (logs: Record<string, unknown>[]) => logs.filter((l) => "outcome" in l);

Deno.test("a team token works where the password does, and its name goes in the log line", async () => {
  await using t = await setup({ translate: { token: TRANSLATE } });
  const ok = await send(t, chat(TRANSLATE));
  assert.equal(ok.status, 200);
  const wrong = await send(t, chat("not-a-team-token-at-all"));
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.error.code, "invalid_api_key");
  const lines = requestLines(t.logs);
  assert.equal(lines[0].team, "translate");
  assert.equal(t.calls.length, 1);
  assert(!JSON.stringify(t.logs).includes(TRANSLATE));
});

Deno.test("scope: a service or a model outside the team's gets 403 team_forbidden in the provider's shape, with nothing upstream", async () => {
  await using t = await setup({
    translate: {
      token: TRANSLATE,
      services: ["openai", "gemini"],
      models: ["gpt-4o*", "gemini-*"],
    },
  });
  const claude = await send(
    t,
    new Request("http://gw/claude/v1/messages", {
      method: "POST",
      headers: { "x-api-key": TRANSLATE, "content-type": "application/json" },
      body: JSON.stringify({ model: "claude-3", messages: [] }),
    }),
  );
  assert.equal(claude.status, 403);
  assert.equal(claude.body.type, "error");
  assert.equal(claude.body.error.type, "permission_error");
  assert.match(claude.body.error.message, /claude.*Allowed: openai, gemini/);

  const model = await send(t, chat(TRANSLATE, { model: "o3" }));
  assert.equal(model.status, 403);
  assert.equal(model.body.error.code, "team_forbidden");
  assert.match(model.body.error.message, /o3.*gpt-4o\*, gemini-\*/);

  const noModel = await send(t, chat(TRANSLATE, {}));
  assert.equal(noModel.status, 403);
  assert.equal(noModel.body.error.code, "team_forbidden");

  const native = await send(
    t,
    new Request("http://gw/gemini/v1beta/models/imagen-3:generateContent", {
      method: "POST",
      headers: { "x-goog-api-key": TRANSLATE, "content-type": "application/json" },
      body: "{}",
    }),
  );
  assert.equal(native.status, 403);
  assert.match(native.body.error.message, /imagen-3/);
  assert.equal(t.calls.length, 0);

  assert.equal((await send(t, chat(TRANSLATE, { model: "gpt-4o-mini" }))).status, 200);
  assert.equal(t.calls.length, 1);
});

Deno.test("scope: a team with a model list sees only its models in GET /v1/models", async () => {
  await using t = await setup(
    { translate: { token: TRANSLATE, models: ["gpt-4o*"] } },
    () =>
      jsonAnswer(200, {
        object: "list",
        data: [{ id: "gpt-4o" }, { id: "o3" }, { id: "gpt-4o-mini" }],
      }),
  );
  const req = new Request("http://gw/openai/v1/models", {
    headers: { authorization: `Bearer ${TRANSLATE}` },
  });
  const listed = await send(t, req);
  assert.deepEqual(listed.body.data.map((m: { id: string }) => m.id), ["gpt-4o", "gpt-4o-mini"]);
  const all = await send(t, admin("GET", "/openai/v1/models"));
  assert.equal(all.body.data.length, 3);
});

Deno.test("budget: past its daily requests a team gets 429 team_budget_exhausted until the reset, then works again", async () => {
  await using t = await setup(
    { translate: { token: TRANSLATE, daily: { requests: 3 } } },
    undefined,
    {},
    Date.UTC(2026, 10, 29, 23, 59, 0),
  );
  for (let i = 0; i < 3; i++) assert.equal((await send(t, chat(TRANSLATE))).status, 200);
  const over = await send(t, chat(TRANSLATE));
  assert.equal(over.status, 429);
  assert.equal(over.body.error.code, "team_budget_exhausted");
  const resetsAt = Date.UTC(2026, 10, 30, 0, 0, 0);
  assert.equal(over.body.error.resetsAt, new Date(resetsAt).toISOString());
  assert.equal(
    Number(over.res.headers.get("retry-after")),
    Math.ceil((resetsAt - t.clock.now()) / 1000),
  );
  assert.equal(t.calls.length, 3);
  // The password is not held to the team's budget.
  assert.equal(
    (await send(t, admin("POST", "/openai/v1/chat/completions", { model: "m" }))).status,
    200,
  );
  await t.clock.advance(resetsAt - t.clock.now());
  assert.equal((await send(t, chat(TRANSLATE))).status, 200);
});

Deno.test("budget across instances: what another instance reserved and left unused is spent here within seconds; Retry-After says so, then says the reset", async () => {
  const clock = new FakeClock(Date.UTC(2026, 10, 29, 12, 0, 0));
  await using kv = await Deno.openKv(":memory:");
  const instance = () =>
    gatewayOver(
      () => chatAnswer(10),
      {
        queueTimeoutMs: 1000,
        teams: { translate: { token: TRANSLATE, daily: { requests: 40 } } },
        services: { openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 10 } },
      },
      { OPENAI_API_KEYS: "sk-a" },
      { clock, kv },
    );
  await using a = await instance();
  await using b = await instance();
  const { first, last } = await dayAcrossInstances(clock, [a, b], () => chat(TRANSLATE), 40);
  assert.equal(first.body.error?.code, "team_budget_exhausted");
  assert.equal(last.body.error?.code, "team_budget_exhausted");
});

Deno.test("budget: retries count as requests sent", async () => {
  let n = 0;
  await using t = await setup(
    { translate: { token: TRANSLATE, daily: { requests: 2 } } },
    () => n++ === 0 ? jsonAnswer(500, { error: { message: "boom" } }) : chatAnswer(5),
  );
  assert.equal((await send(t, chat(TRANSLATE))).status, 200);
  assert.equal(t.calls.length, 2);
  assert.equal((await send(t, chat(TRANSLATE))).body.error.code, "team_budget_exhausted");
});

Deno.test("budget: tokens count from the answers' usage, JSON and SSE, and the day's count stops the team", async () => {
  let stream = false;
  await using t = await setup(
    { translate: { token: TRANSLATE, daily: { tokens: 100 } } },
    () =>
      stream
        ? new Response(
          'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n' +
            'data: {"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":25,"total_tokens":45}}\n\n' +
            "data: [DONE]\n\n",
          { headers: { "content-type": "text/event-stream" } },
        )
        : chatAnswer(40),
  );
  assert.equal((await send(t, chat(TRANSLATE))).status, 200);
  stream = true;
  const res = await settle(
    t.clock,
    t.gateway.handler(chat(TRANSLATE, { model: "m", stream: true })),
  );
  assert.match(await res.text(), /\[DONE\]/);
  await t.clock.advance(1500); // a flush writes the day's count and reads it back
  const usage = await send(t, admin("GET", "/_kvgate/teams"));
  const translate = usage.body.teams.find((x: { name: string }) => x.name === "translate");
  assert.equal(translate.usageToday.tokens, 85);
  assert.equal(translate.usageToday.requests, 2);
  stream = false;
  assert.equal((await send(t, chat(TRANSLATE))).status, 200); // 85 < 100
  await t.clock.advance(1500);
  const over = await send(t, chat(TRANSLATE)); // 125 ≥ 100
  assert.equal(over.status, 429);
  assert.equal(over.body.error.code, "team_budget_exhausted");
});

Deno.test("budget: an answer without usage counts the README's estimate, a token per 4 bytes", async () => {
  await using t = await setup({ translate: { token: TRANSLATE } }, () => chatAnswer(undefined));
  const req = chat(TRANSLATE);
  const requestBytes = (await req.clone().arrayBuffer()).byteLength;
  const answerBytes = JSON.stringify(await chatAnswer(undefined).json()).length;
  assert.equal((await send(t, req)).status, 200);
  await t.clock.advance(1500);
  const usage = await send(t, admin("GET", "/_kvgate/teams"));
  assert.equal(usage.body.teams[0].usageToday.tokens, Math.ceil((requestBytes + answerBytes) / 4));
});

Deno.test("own pacing: over its limits a team's request waits, then gets 429 team_rate_limited", async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  await using t = await setup(
    { translate: { token: TRANSLATE, limits: { openai: { maxConn: 1 } } } },
    (req) => req.headers.get("x-tag") === "slow" ? held.then(() => chatAnswer(1)) : chatAnswer(1),
    { queueTimeoutMs: 1000 },
  );
  const slow = chat(TRANSLATE);
  slow.headers.set("x-tag", "slow");
  const first = t.gateway.handler(slow);
  const refused = await settle(t.clock, t.gateway.handler(chat(TRANSLATE)));
  const body = await refused.json();
  assert.equal(refused.status, 429);
  assert.equal(body.error.code, "team_rate_limited");
  assert(Number(refused.headers.get("retry-after")) >= 1);
  // Another team is not held by this one's limit.
  assert.equal(
    (await send(t, admin("POST", "/openai/v1/chat/completions", { model: "m" }))).status,
    200,
  );
  release();
  assert.equal((await settle(t.clock, first)).status, 200);
});

Deno.test("lanes: within a team interactive requests go before bulk ones", async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  const order: string[] = [];
  await using t = await setup(
    { translate: { token: TRANSLATE, limits: { openai: { maxConn: 1 } } } },
    async (req) => {
      // Tagged in the body: a client's own headers do not go upstream.
      const tag = JSON.parse(await req.text()).user ?? "";
      order.push(tag);
      return tag === "first" ? held.then(() => chatAnswer(1)) : chatAnswer(1);
    },
  );
  const tagged = (tag: string, lane?: string) => {
    const req = chat(TRANSLATE, { model: "m", user: tag }, lane);
    // The body is read at once: a relayed answer holds the team's slot to its last byte.
    return t.gateway.handler(req).then(async (r) => ({ status: r.status, body: await r.text() }));
  };
  const all = [tagged("first"), tagged("bulk-1", "bulk"), tagged("bulk-2", "bulk")];
  await t.clock.advance(10);
  all.push(tagged("interactive"));
  await t.clock.advance(10);
  release();
  for (const r of await settle(t.clock, Promise.all(all))) assert.equal(r.status, 200, r.body);
  assert.deepEqual(order, ["first", "interactive", "bulk-1", "bulk-2"]);
});

Deno.test("admin API: create, use, list, change, rotate and delete a team; config teams are read-only", async () => {
  await using t = await setup({ translate: { token: TRANSLATE } });
  const made = await send(t, admin("POST", "/_kvgate/teams", { name: "agents", weight: 2 }));
  assert.equal(made.status, 201);
  const token: string = made.body.token;
  assert.match(token, /^kvt_[A-Za-z0-9_-]{43}$/);
  assert.equal((await send(t, chat(token))).status, 200);

  const listed = await send(t, admin("GET", "/_kvgate/teams"));
  assert.deepEqual(
    listed.body.teams.map((x: { name: string; source: string }) => [x.name, x.source]),
    [
      ["translate", "config"],
      ["agents", "api"],
    ],
  );
  assert(!JSON.stringify(listed.body).includes(token));

  const changed = await send(
    t,
    admin("PATCH", "/_kvgate/teams/agents", { daily: { requests: 5 } }),
  );
  assert.equal(changed.status, 200);
  assert.deepEqual(changed.body.team.daily, { requests: 5 });
  assert.equal(changed.body.team.weight, 2);

  const one = await send(t, admin("GET", "/_kvgate/teams/agents"));
  assert.equal(one.body.team.name, "agents");
  assert.equal(one.body.team.usageToday.requests, 1);
  assert.equal((await send(t, admin("GET", "/_kvgate/teams/nobody"))).status, 404);
  assert.equal((await send(t, admin("PUT", "/_kvgate/teams/agents", {}))).status, 405);

  const rotated = await send(t, admin("POST", "/_kvgate/teams/agents/rotate"));
  assert.equal(rotated.status, 200);
  assert.equal((await send(t, chat(token))).status, 401);
  assert.equal((await send(t, chat(rotated.body.token))).status, 200);

  assert.equal((await send(t, admin("DELETE", "/_kvgate/teams/agents"))).status, 204);
  assert.equal((await send(t, chat(rotated.body.token))).status, 401);

  const readOnly = await send(t, admin("PATCH", "/_kvgate/teams/translate", { weight: 3 }));
  assert.equal(readOnly.status, 409);
  assert.match(readOnly.body.error.message, /GATEWAY_CONFIG/);
  const clash = await send(t, admin("POST", "/_kvgate/teams", { name: "translate" }));
  assert.equal(clash.status, 409);
  const unknown = await send(t, admin("DELETE", "/_kvgate/teams/nobody"));
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.error.code, "team_not_found");
  const bad = await send(t, admin("POST", "/_kvgate/teams", { name: "x1", weight: -1 }));
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.field, "weight");
  assert.match(bad.body.error.message, /weight must be a positive number \(got -1\)/);
  const badLimit = await send(
    t,
    admin("POST", "/_kvgate/teams", {
      name: "x2",
      limits: { openai: { rps: 1000 } },
    }),
  );
  assert.equal(badLimit.status, 400);
  assert.equal(badLimit.body.error.field, "limits.openai.rps");

  // No token, made or rotated, is in KV or in the log.
  for await (const e of t.kv.list({ prefix: [] })) {
    const v = JSON.stringify(e.value, (_, x) => typeof x === "bigint" ? String(x) : x);
    for (const secret of [token, rotated.body.token, TRANSLATE]) assert(!v.includes(secret));
  }
  for (const secret of [token, rotated.body.token, TRANSLATE]) {
    assert(!JSON.stringify(t.logs).includes(secret));
  }
});

Deno.test("admin API: to anyone without the password, a team token included, /_kvgate is nginx's 404", async () => {
  await using t = await setup({ translate: { token: TRANSLATE } });
  for (const token of [TRANSLATE, "nothing"]) {
    const res = await t.gateway.handler(admin("GET", "/_kvgate/teams", undefined, token));
    assert.equal(res.status, 404);
    assert.match(res.headers.get("server") ?? "", /nginx/);
    assert.match(await res.text(), /nginx/);
  }
});
