/**
 * An admin of its own, guessing slowed and seen, no cross-site admin
 * actions (security review M1, M2, M3, L8, L13), in process on the fake clock.
 */
import assert from "node:assert/strict";
import type { Gateway } from "../../gateway/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import { chatRequest, fakeUpstream, inProcessGateway, jsonAnswer } from "../support/in_process.ts";

const ADMIN = "admin-password-0123456789";
const OK = { id: "c", choices: [] };

interface Setup {
  clock: FakeClock;
  gateway: Gateway;
  logs: Record<string, unknown>[];
  [Symbol.asyncDispose](): Promise<void>;
}

async function setup(env: Record<string, string> = {}, settings = {}): Promise<Setup> {
  const clock = new FakeClock();
  const kv = await Deno.openKv(":memory:");
  const upstream = fakeUpstream(() => jsonAnswer(200, OK));
  const logs: Record<string, unknown>[] = [];
  const gateway = await inProcessGateway(
    {
      ...settings,
      services: { openai: { target: "http://upstream.test", rps: 100, burst: 100, maxConn: 10 } },
    },
    { OPENAI_API_KEYS: "sk-a", ...env },
    { kv, clock, fetch: upstream.fetch, logs },
  );
  return {
    clock,
    gateway,
    logs,
    async [Symbol.asyncDispose]() {
      await gateway.close();
      kv.close();
    },
  };
}

/** What Deno.serve tells the handler of a connection from `hostname`. */
function from(hostname: string): Deno.ServeHandlerInfo {
  return {
    remoteAddr: { transport: "tcp", hostname, port: 40000 },
    completed: Promise.resolve(),
  } as Deno.ServeHandlerInfo;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const basic = (password: string) => ({ authorization: `Basic ${btoa(`admin:${password}`)}` });

async function call(
  t: Setup,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
  info?: Deno.ServeHandlerInfo,
) {
  const req = new Request(`http://gw.example${path}`, { method, headers, body });
  // A refused credential is answered at once: no need to move the clock.
  const answered = t.gateway.handler(req, info);
  const res = headers.authorization?.includes("wrong") || headers.authorization?.includes("guess")
    ? await answered
    : await settle(t.clock, answered);
  return { status: res.status, headers: res.headers, text: await res.text() };
}

Deno.test("M1: with ADMIN_PASSWORD, only it opens the admin API; ACCESS_PASSWORD serves the API and gets nginx's 404 there", async () => {
  await using t = await setup({ ADMIN_PASSWORD: ADMIN });
  assert.equal((await call(t, "GET", "/_kvgate/status", bearer(ADMIN))).status, 200);
  const client = await call(t, "GET", "/_kvgate/status", bearer(PASSWORD));
  assert.equal(client.status, 404);
  assert.match(client.text, /nginx/);
  assert.equal(
    (await call(t, "POST", "/_kvgate/services/openai/pause", bearer(PASSWORD))).status,
    404,
  );
  const api = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.equal(api.status, 200);
  await api.body?.cancel();
  const asClient = await call(t, "GET", "/openai/v1/models", bearer(ADMIN));
  assert.equal(asClient.status, 401, "the admin credential serves no API traffic");
});

Deno.test("M1: accessPasswordAdmin false leaves the admin API closed to ACCESS_PASSWORD", async () => {
  await using t = await setup({}, { accessPasswordAdmin: false });
  assert.equal((await call(t, "GET", "/_kvgate/status", bearer(PASSWORD))).status, 404);
  assert.equal((await call(t, "GET", "/_kvgate/", basic(PASSWORD))).status, 401);
});

Deno.test("M2: 1,000 wrong passwords from one address are shut out after a burst, with a growing Retry-After, while another address gets in at once", async () => {
  await using t = await setup();
  const guesser = from("203.0.113.7");
  const statuses = new Map<number, number>();
  let lastRetry = 0;
  for (let i = 0; i < 1000; i++) {
    const r = await call(
      t,
      "GET",
      "/openai/v1/models",
      bearer(`wrong-guess-${i}`),
      undefined,
      guesser,
    );
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    if (r.status === 429) lastRetry = Number(r.headers.get("retry-after"));
  }
  assert.equal(statuses.get(401), 10, "ten refusals, then the address is shut out");
  assert.equal(statuses.get(429), 990);
  assert.ok(lastRetry >= 1, "a Retry-After on the shut-out");
  const right = await call(t, "GET", "/openai/v1/models", bearer(PASSWORD), undefined, guesser);
  assert.equal(right.status, 429, "even the right password waits out the shut-out");
  const other = await call(
    t,
    "GET",
    "/openai/v1/models",
    bearer(PASSWORD),
    undefined,
    from("198.51.100.2"),
  );
  assert.equal(other.status, 200, "another address logs in at once");
  const refusals = t.logs.filter((l) => l.status === 401);
  assert.equal(refusals.length, 10);
  assert.ok(refusals.every((l) => l.client === "203.0.113.7"), "each refusal names the address");
  assert.ok(!JSON.stringify(t.logs).includes("wrong-guess"), "no guess is logged");
});

Deno.test("M2: the shut-out doubles with each further refusal and ends; a trusted x-forwarded-for names the client", async () => {
  await using t = await setup({}, { clientAddressHeader: "x-forwarded-for" });
  let guess = 0;
  const via = (chain: string) => ({
    ...bearer(`wrong-password-${guess++}`),
    "x-forwarded-for": chain,
  });
  for (let i = 0; i < 11; i++) {
    await call(t, "GET", "/openai/v1/models", via("1.1.1.1, 203.0.113.9"));
  }
  const shut = await call(t, "GET", "/openai/v1/models", via("9.9.9.9, 203.0.113.9"));
  assert.equal(shut.status, 429, "the last entry (the one the proxy added) is the address");
  const free = await call(t, "GET", "/openai/v1/models", {
    ...bearer(PASSWORD),
    "x-forwarded-for": "203.0.113.10",
  });
  assert.equal(free.status, 200);
  await t.clock.advance(2_000);
  const again = await call(t, "GET", "/openai/v1/models", via("203.0.113.9"));
  assert.equal(again.status, 429);
  assert.ok(Number(again.headers.get("retry-after")) >= 2, "doubled");
  await t.clock.advance(10_000);
  assert.equal(
    (await call(t, "GET", "/openai/v1/models", {
      ...bearer(PASSWORD),
      "x-forwarded-for": "203.0.113.9",
    })).status,
    200,
  );
});

Deno.test("M2: one stale credential sent again and again (a rotated token, a misconfigured client) is not guessing: the address is never shut out", async () => {
  await using t = await setup();
  const client = from("203.0.113.20");
  for (let i = 0; i < 200; i++) {
    const r = await call(
      t,
      "GET",
      "/openai/v1/models",
      bearer("wrong-but-the-same-0123"),
      undefined,
      client,
    );
    assert.equal(r.status, 401);
  }
  assert.equal(
    (await call(t, "GET", "/openai/v1/models", bearer(PASSWORD), undefined, client)).status,
    200,
  );
});

Deno.test("M2: wrong admin credentials count too, and a shut-out address sees only the disguise", async () => {
  await using t = await setup({ ADMIN_PASSWORD: ADMIN });
  const guesser = from("203.0.113.8");
  for (let i = 0; i < 11; i++) {
    const r = await call(t, "GET", "/_kvgate/", basic(`guess-${i}`), undefined, guesser);
    assert.equal(r.status, 401);
  }
  assert.equal((await call(t, "GET", "/_kvgate/", basic(ADMIN), undefined, guesser)).status, 401);
  assert.equal(
    (await call(t, "GET", "/_kvgate/", basic(ADMIN), undefined, from("198.51.100.3"))).status,
    200,
  );
  const refused = t.logs.filter((l) => l.event === "admin_login_refused");
  assert.ok(refused.length >= 10 && refused.every((l) => l.client === "203.0.113.8"));
});

const CROSS_SITE = {
  ...basic(PASSWORD),
  origin: "https://evil.example",
  "sec-fetch-site": "cross-site",
  "content-type": "application/x-www-form-urlencoded",
};

Deno.test("M3: a cross-site form POST with the browser's cached Basic credentials is refused on every admin action, and changes nothing", async () => {
  await using t = await setup({}, { teams: { ops: { token: "ops-token-0123456789abcdef" } } });
  const made = await call(t, "POST", "/_kvgate/teams", {
    ...bearer(PASSWORD),
    "content-type": "application/json",
  }, JSON.stringify({ name: "victim" }));
  assert.equal(made.status, 201);
  const actions: [string, string, string?][] = [
    ["POST", "/_kvgate/services/openai/pause"],
    ["POST", "/_kvgate/services/openai/resume"],
    ["POST", "/_kvgate/keys/openai/k_000000000000/enable"],
    ["POST", "/_kvgate/teams", '{"name":"csrfmade","models":["*","="]}'],
    ["POST", "/_kvgate/teams/victim/rotate"],
    ["PATCH", "/_kvgate/teams/victim", '{"weight":9}'],
    ["DELETE", "/_kvgate/teams/victim"],
  ];
  for (const [method, path, body] of actions) {
    const r = await call(t, method, path, CROSS_SITE, body);
    assert.equal(r.status, 403, `${method} ${path}`);
    assert.equal(JSON.parse(r.text).error.code, "cross_site_refused");
  }
  const api = await settle(t.clock, t.gateway.handler(chatRequest()));
  assert.equal(api.status, 200, "the service was not paused");
  await api.body?.cancel();
  const teams = JSON.parse((await call(t, "GET", "/_kvgate/teams", bearer(PASSWORD))).text).teams;
  assert.deepEqual(teams.map((x: { name: string; weight: number }) => [x.name, x.weight]), [[
    "ops",
    1,
  ], ["victim", 1]]);
  // The page itself (same origin) and a script with the Bearer password may act.
  const page = { ...basic(PASSWORD), "sec-fetch-site": "same-origin", origin: "http://gw.example" };
  assert.equal((await call(t, "POST", "/_kvgate/services/openai/pause", page)).status, 200);
  assert.equal(
    (await call(t, "POST", "/_kvgate/services/openai/resume", bearer(PASSWORD))).status,
    200,
  );
  const older = { ...basic(PASSWORD), origin: "http://gw.example", host: "gw.example" };
  assert.equal((await call(t, "POST", "/_kvgate/services/openai/resume", older)).status, 200);
});

Deno.test("M3 and L13: the status page cannot be framed or sniffed; an admin body must be JSON of at most 64 KiB", async () => {
  await using t = await setup();
  const page = await call(t, "GET", "/_kvgate/", basic(PASSWORD));
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-security-policy")!, /frame-ancestors 'none'/);
  assert.equal(page.headers.get("x-frame-options"), "DENY");
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  const asText = await call(t, "POST", "/_kvgate/teams", {
    ...bearer(PASSWORD),
    "content-type": "text/plain",
  }, '{"name":"x"}');
  assert.equal(asText.status, 400);
  assert.match(asText.text, /application\/json/);
  const huge = JSON.stringify({ name: "x", pad: "y".repeat(70_000) });
  const big = await call(t, "POST", "/_kvgate/teams", {
    ...bearer(PASSWORD),
    "content-type": "application/json",
  }, huge);
  assert.equal(big.status, 400);
  assert.match(big.text, /larger than 65536 bytes/);
});

Deno.test("L8: a malformed escape in an admin path gets a JSON 400, not a 500", async () => {
  await using t = await setup();
  for (
    const [method, path] of [["GET", "/_kvgate/teams/%E0%A4%A"], [
      "POST",
      "/_kvgate/services/%E0%A4%A/pause",
    ], ["POST", "/_kvgate/keys/openai/%E0%A4%A/enable"]]
  ) {
    const r = await call(t, method, path, bearer(PASSWORD));
    assert.equal(r.status, 400, path);
    assert.equal(JSON.parse(r.text).error.code, "invalid_path");
  }
  assert.ok(!t.logs.some((l) => l.event === "internal_error" || l.event === "admin_error"));
});
