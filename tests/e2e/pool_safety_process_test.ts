/**
 * The security review's reproductions (../shared/security_review.md H1, H2,
 * M2), run as the review ran them: a gateway started with `deno task start`,
 * real sockets, and a provider on loopback that answers as OpenAI,
 * Anthropic and Gemini do. Each fails on 1e41bfd.
 */
import assert from "node:assert/strict";
import { startMockUpstream } from "../support/mock_upstream.ts";
import { PASSWORD } from "../support/harness.ts";
import { type GatewayProcess, startGatewayProcess, stopProcesses } from "../support/process.ts";
import { gemini429Body } from "../support/provider_answers.ts";

const KEYS = ["sk-pool-key-1", "sk-pool-key-2", "sk-pool-key-3"];
const ALPHA = "alpha-team-token-0123456789";
const BETA = "beta-team-token-0123456789x";

async function post(
  proc: GatewayProcess,
  path: string,
  token: string,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const r = await fetch(`${proc.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: r.status, retryAfter: r.headers.get("retry-after"), text: await r.text() };
}

/**
 * Every key's state on the status page, as the admin sees it, once the page
 * is newer than what was just done (a snapshot is at most a second old).
 */
async function keyStates(proc: GatewayProcess, service: string): Promise<string[]> {
  await new Promise((r) => setTimeout(r, 1100));
  const r = await fetch(`${proc.url}/_kvgate/status`, {
    headers: { authorization: `Bearer ${PASSWORD}` },
  });
  const s = await r.json();
  return s.services[service].keys.map((k: { state: string; reason?: string }) =>
    k.reason ? `${k.state}:${k.reason}` : k.state
  );
}

Deno.test("the review's H1 and H2 reproductions over a real process: no client request rests a shared key or blocks one for everyone", async () => {
  const dir = await Deno.makeTempDir();
  const mock = await startMockUpstream({ provider: { keys: KEYS } });
  const limits = { rps: 100, burst: 100, maxConn: 20 };
  const config = {
    teams: { alpha: { token: ALPHA }, beta: { token: BETA } },
    services: {
      oai: { target: mock.url, ...limits },
      anth: { target: mock.url, style: "anthropic", rateLimitHeaders: "anthropic", ...limits },
      gem: {
        target: mock.url,
        style: "gemini",
        rateLimitHeaders: "none",
        dayResetsAt: "08:00",
        ...limits,
      },
      tpm: { target: mock.url, keyQuota: { tpm: 6000 }, ...limits },
    },
  };
  const env = Object.fromEntries(
    ["OAI", "ANTH", "GEM", "TPM"].map((s) => [`${s}_API_KEYS`, KEYS.join(",")]),
  );
  const proc = await startGatewayProcess({ kvPath: `${dir}/kv.sqlite3`, config, env });
  try {
    const chat = { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] };
    // a: an unknown field named insufficient_quota, twice.
    for (let i = 0; i < 2; i++) {
      const r = await post(proc, "/oai/v1/chat/completions", ALPHA, {
        ...chat,
        insufficient_quota: 1,
      });
      assert.equal(r.status, 400);
    }
    // b: OpenAI-Organization.
    const b = await post(proc, "/oai/v1/chat/completions", ALPHA, chat, {
      "openai-organization": "org-x",
    });
    assert.equal(b.status, 200);
    // d: a request too large for the key's TPM.
    const d = await post(proc, "/oai/v1/chat/completions", ALPHA, { ...chat, max_tokens: 200_000 });
    assert.equal(d.status, 429);
    assert.deepEqual(await keyStates(proc, "oai"), ["active", "active", "active"]);
    assert.equal((await post(proc, "/oai/v1/chat/completions", BETA, chat)).status, 200);

    // c: a browser's Origin on the Anthropic route.
    const msg = { model: "claude-x", max_tokens: 5, messages: [{ role: "user", content: "hi" }] };
    const c = await post(proc, "/anth/v1/messages", ALPHA, msg, {
      origin: "chrome-extension://abcdef",
      "anthropic-version": "2023-06-01",
    });
    assert.equal(c.status, 200);
    assert.deepEqual(await keyStates(proc, "anth"), ["active", "active", "active"]);

    // Gemini: a per-day 429 rests one key as daily_quota until 08:00 UTC; the request is served.
    const day = gemini429Body("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "0s");
    mock.script.set("*", [{ status: 429, body: day }]);
    const g = await post(proc, "/gem/v1beta/models/gemini-2.5-flash:generateContent", ALPHA, {
      contents: [{ parts: [{ text: "hi" }] }],
    });
    assert.equal(g.status, 200);
    const gem = await keyStates(proc, "gem");
    assert.deepEqual(gem.filter((s) => s !== "active"), ["disabled:daily_quota"]);
    const daily = proc.stdout.events().find((e) =>
      e.event === "key_rest" && e.reason === "daily_quota"
    );
    assert.ok(daily, "the rest is logged as daily_quota");

    // H2: one 2 MiB body on a key with tpm 6000, twice, then another team's ordinary request.
    const big = { ...chat, messages: [{ role: "user", content: "x".repeat(2 * 1024 * 1024) }] };
    for (let i = 0; i < 2; i++) {
      const r = await post(proc, "/tpm/v1/chat/completions", ALPHA, big);
      assert.equal(r.status, 413);
      assert.equal(JSON.parse(r.text).error.code, "request_too_large");
    }
    const after = await post(proc, "/tpm/v1/chat/completions", BETA, chat);
    assert.equal(after.status, 200, after.text);
    assert.equal(after.retryAfter, null);
    assert.ok(!mock.received.some((r) => r.body.length > 1_000_000), "the big body never went out");
  } finally {
    await stopProcesses([proc]);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("M2 over real sockets: 1,000 wrong passwords from 127.0.0.1 are slowed while 127.0.0.2 logs in at once, and the log names the guesser", async () => {
  const dir = await Deno.makeTempDir();
  const mock = await startMockUpstream();
  const proc = await startGatewayProcess({
    kvPath: `${dir}/kv.sqlite3`,
    config: { services: { oai: { target: mock.url, rps: 100, burst: 100, maxConn: 10 } } },
    env: { OAI_API_KEYS: "sk-one" },
  });
  const other = Deno.createHttpClient({ localAddress: "127.0.0.2" });
  try {
    const statuses = new Map<number, number>();
    const started = Date.now();
    for (let i = 0; i < 1000; i++) {
      const r = await fetch(`${proc.url}/oai/v1/models`, {
        headers: { authorization: `Bearer guess-number-${i}` },
      });
      await r.body?.cancel();
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
    console.log(
      `M2: 1,000 guesses in ${Date.now() - started} ms: ${JSON.stringify([...statuses])}`,
    );
    assert.equal(statuses.get(401), 10, "ten wrong passwords are told so; then the address waits");
    assert.equal(statuses.get(429), 990);
    const t0 = Date.now();
    const fromElsewhere = await fetch(`${proc.url}/oai/v1/models`, {
      client: other,
      headers: { authorization: `Bearer ${PASSWORD}` },
    });
    await fromElsewhere.body?.cancel();
    assert.equal(fromElsewhere.status, 200);
    assert.ok(Date.now() - t0 < 1000, "at once");
    const refused = proc.stdout.events().filter((e) => e.status === 401);
    assert.equal(refused.length, 10);
    assert.ok(refused.every((e) => e.client === "127.0.0.1"), "the log names the address");
    assert.ok(!proc.stdout.text().includes("guess-number"), "no guess is logged");
  } finally {
    other.close();
    await stopProcesses([proc]);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("M8 over a real process, as the review ran it: team alpha's 40 slow requests never get beta's single request gateway_queue_full", async () => {
  const dir = await Deno.makeTempDir();
  const mock = await startMockUpstream({ latencyMs: 3000 });
  const proc = await startGatewayProcess({
    kvPath: `${dir}/kv.sqlite3`,
    config: {
      queueLimit: 20,
      queueTimeoutMs: 4000,
      teams: { alpha: { token: ALPHA }, beta: { token: BETA } },
      services: { slow: { target: mock.url, rps: 100, burst: 100, maxConn: 1 } },
    },
    env: { SLOW_API_KEYS: "sk-one" },
  });
  try {
    const chat = { model: "m", messages: [{ role: "user", content: "hi" }] };
    const flood = Array.from(
      { length: 40 },
      () => post(proc, "/slow/v1/chat/completions", ALPHA, chat),
    );
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    const beta = await post(proc, "/slow/v1/chat/completions", BETA, chat);
    console.log(`M8: beta ${beta.status} after ${Date.now() - t0} ms`);
    assert.ok(!beta.text.includes("gateway_queue_full"), beta.text);
    const alpha = await Promise.all(flood);
    assert.ok(alpha.some((a) => a.status === 429), "the flood is still bounded");
  } finally {
    await stopProcesses([proc]);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});
