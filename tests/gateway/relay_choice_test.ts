/**
 * Which relay a stream gets, decided once per request: native (handed to
 * the runtime) unless something must read it — a team's tokens budget, the
 * key's `tpm`, OpenTelemetry's token metrics, or `"streamRelay": "observe"`
 * — and the log line says which.
 */
import assert from "node:assert/strict";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { fakeUpstream, inProcessGateway } from "../support/in_process.ts";
import { PASSWORD } from "../support/harness.ts";

const TEAM = "team-token-0123456789abcdef";

/** An event stream that reports its usage in its last event. */
const sse = () =>
  new Response(
    'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n' +
      'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}\n\n' +
      "data: [DONE]\n\n",
    { headers: { "content-type": "text/event-stream" } },
  );

/** What the server tells of a connection: over once the test says so. */
function connection() {
  let over!: () => void;
  const completed = new Promise<void>((r) => over = r);
  const info = {
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
    completed,
  } as Deno.ServeHandlerInfo;
  return { info, over };
}

interface Case {
  name: string;
  service?: Record<string, unknown>;
  settings?: Record<string, unknown>;
  env?: Record<string, string>;
  token?: string;
  relay: "native" | "observe";
}

const cases: Case[] = [
  { name: "the defaults", relay: "native" },
  { name: "a team without a tokens budget", token: TEAM, relay: "native" },
  {
    name: "a team with a tokens budget",
    token: TEAM,
    settings: { teams: { t: { token: TEAM, daily: { tokens: 1000 } } } },
    relay: "observe",
  },
  { name: "a key with a tpm quota", service: { keyQuota: { tpm: 100_000 } }, relay: "observe" },
  { name: "OpenTelemetry on", env: { OTEL_DENO: "true" }, relay: "observe" },
  { name: 'streamRelay "observe"', service: { streamRelay: "observe" }, relay: "observe" },
];

for (const c of cases) {
  Deno.test(`relay choice: ${c.name} → ${c.relay}, said in the log`, async () => {
    const kv = await Deno.openKv(":memory:");
    const logs: Record<string, unknown>[] = [];
    const upstream = fakeUpstream(() => sse());
    const clock = new FakeClock();
    const gateway = await inProcessGateway(
      {
        teams: { t: { token: TEAM } },
        ...c.settings,
        services: {
          openai: { target: "http://upstream.test", rps: 100, burst: 100, ...c.service },
        },
      },
      { OPENAI_API_KEYS: "sk-a", ...c.env },
      { kv, clock, fetch: upstream.fetch, logs },
    );
    try {
      const { info, over } = connection();
      const res = await settle(
        clock,
        gateway.handler(
          new Request("http://gw/openai/v1/chat/completions", {
            method: "POST",
            headers: {
              authorization: `Bearer ${c.token ?? PASSWORD}`,
              "content-type": "application/json",
            },
            body: JSON.stringify({ model: "m", stream: true, messages: [] }),
          }),
          info,
        ),
      );
      assert.equal(res.status, 200);
      assert.match(await settle(clock, res.text()), /\[DONE\]/, "the whole stream arrives");
      over();
      await info.completed;
      await new Promise((r) => setTimeout(r, 0));
      const line = logs.find((l) => l.status === 200);
      assert.equal(line?.relay, c.relay);
      assert.equal(line?.outcome, c.relay === "native" ? "native" : "complete");
    } finally {
      await gateway.close();
      kv.close();
    }
  });
}
