/**
 * The sinks a request's end is told of (`gateway/stages/account.ts`), each alone:
 * a request record and a pipeline made of only what the sink reads, and
 * what the sink did with them.
 */
import assert from "node:assert/strict";
import {
  attemptKeySink,
  attemptMetricsSink,
  attemptMinutesSink,
  attemptTelemetrySink,
  type EndSink,
  keySink,
  logSink,
  metricsSink,
  minutesSink,
  type RequestEnd,
  teamSink,
  telemetrySink,
} from "../../gateway/stages/account.ts";
import type { Exchange } from "../../gateway/exchange.ts";
import type { StageDeps } from "../../gateway/stage_deps.ts";
import { Metrics } from "../../status/mod.ts";

const STARTED = 1_700_000_000_000;
const SECRET = "sk-live-secret-0123456789";

/** What the key's day counter was told, by every record made since the last call. */
let dayCalls: unknown[][] = [];
const keyDays = {
  count: (...a: unknown[]) => dayCalls.push(["count", ...a]),
  addTokens: (...a: unknown[]) => dayCalls.push(["addTokens", ...a]),
};
function told(): unknown[][] {
  const calls = dayCalls;
  dayCalls = [];
  return calls;
}

/** A served request of team `t` on key `k1`, 40 ms after it started. */
function record(over: Partial<Exchange> = {}): Exchange {
  return {
    id: "req-1",
    req: new Request("http://gw.test/openai/v1/chat/completions", { method: "POST" }),
    target: { path: "/v1/chat/completions" },
    rt: { service: { name: "openai", dayResetMs: 0, keyQuota: {} }, pacing: undefined, keyDays },
    team: undefined,
    key: { id: "k1", secret: SECRET },
    attempts: 1,
    queueMs: 250,
    upstreamMs: 30,
    started: STARTED,
    usedTokens: undefined,
    usedSplit: undefined,
    relay: undefined,
    client: undefined,
    group: undefined,
    model: "gpt-test",
    keyCost: 0,
    ...over,
  } as unknown as Exchange;
}

const end = (status: number, over: Partial<RequestEnd> = {}): RequestEnd => ({
  status,
  outcome: "complete",
  bytes: 120,
  now: STARTED + 40,
  ...over,
});

/** A pipeline of what the sinks read, with what they wrote. */
function pipeline(telemetryOn = false) {
  const lines: Record<string, unknown>[] = [];
  const minutes: unknown[][] = [];
  const telemetry: Record<string, unknown>[] = [];
  const tokens: unknown[][] = [];
  const p = {
    metrics: new Metrics(),
    minutes: {
      answered: (...a: unknown[]) => minutes.push(["answered", ...a]),
      upstream429: (...a: unknown[]) => minutes.push(["upstream429", ...a]),
    },
    telemetry: {
      enabled: telemetryOn,
      request: (r: Record<string, unknown>) => telemetry.push(r),
      attempt: (r: Record<string, unknown>) => telemetry.push(r),
    },
    clock: { now: () => STARTED + 45 },
    log: (line: Record<string, unknown>) => lines.push(line),
    teams: { budgets: { addTokens: (...a: unknown[]) => tokens.push(a) } },
  } as unknown as StageDeps;
  return { p, lines, minutes, telemetry, tokens };
}

const tell = (sink: EndSink, p: StageDeps, x: Exchange, e: RequestEnd) => sink(p, x, e);

Deno.test("metrics sink: the request by service, team and status; its queue wait; the tokens split by type, cached input only when some", () => {
  const { p } = pipeline();
  const team = { team: { name: "t" } };
  tell(
    metricsSink,
    p,
    record({ team, usedSplit: { input: 10, output: 5, cachedInput: 0 } } as Partial<Exchange>),
    end(200),
  );
  tell(metricsSink, p, record({ usedTokens: 7 }), end(429));
  assert.equal(p.metrics.requests.get("openai", "t", "200"), 1);
  assert.equal(p.metrics.requests.get("openai", "", "429"), 1);
  assert.equal(p.metrics.tokens.get("openai", "t", "input"), 10);
  assert.equal(p.metrics.tokens.get("openai", "t", "output"), 5);
  assert.equal(p.metrics.tokens.get("openai", "t", "cached_input"), 0, "no cached series for none");
  assert.equal(p.metrics.tokens.get("openai", "", "total"), 7, "unsplit: one total");
  assert.match(
    p.metrics.queueWait.render(),
    /kvgate_queue_wait_seconds_count\{service="openai"\} 2/,
  );
});

Deno.test("minutes sink: the answer in its minute", () => {
  const { p, minutes } = pipeline();
  tell(minutesSink, p, record({ usedTokens: 42 }), end(200));
  tell(minutesSink, p, record(), end(502));
  assert.deepEqual(minutes, [
    ["answered", "openai", 200, STARTED + 40],
    ["answered", "openai", 502, STARTED + 40],
  ]);
});

Deno.test("telemetry sink: nothing while OpenTelemetry is off; on, the duration, first byte, and the model only of a served answer", () => {
  const off = pipeline(false);
  tell(telemetrySink, off.p, record(), end(200));
  assert.equal(off.telemetry.length, 0);
  const on = pipeline(true);
  tell(telemetrySink, on.p, record(), end(200));
  tell(telemetrySink, on.p, record(), end(400));
  assert.equal(on.telemetry[0].model, "gpt-test");
  assert.equal(on.telemetry[0].durationS, 0.04);
  assert.equal(on.telemetry[0].firstByteS, 0.03);
  assert.equal(on.telemetry[1].model, undefined, "a client's model string makes no series");
});

Deno.test("log sink: one line with what happened, the key by its id and never its secret", () => {
  const { p, lines } = pipeline();
  tell(logSink, p, record({ relay: "native" }), end(200, { outcome: "native" }));
  assert.equal(lines.length, 1);
  const line = lines[0];
  assert.equal(line.t, new Date(STARTED + 40).toISOString());
  assert.deepEqual(
    [line.id, line.service, line.method, line.status, line.outcome, line.key, line.relay],
    ["req-1", "openai", "POST", 200, "native", "k1", "native"],
  );
  assert.deepEqual([line.queueMs, line.upstreamMs, line.totalMs, line.bytes], [250, 30, 40, 120]);
  assert.ok(!JSON.stringify(line).includes(SECRET));
});

Deno.test("key sink: a served answer charges the key's tpm what it used; a refused one charges nothing", () => {
  const charged: unknown[][] = [];
  const pacing = { charge: (...a: unknown[]) => charged.push(a) };
  const { p } = pipeline();
  const x = () =>
    record({
      keyCost: 100,
      usedTokens: 60,
      rt: { service: { name: "openai", dayResetMs: 0 }, pacing, keyDays },
    } as unknown as Partial<Exchange>);
  tell(keySink, p, x(), end(200));
  tell(keySink, p, x(), end(429));
  assert.equal(charged.length, 1);
  assert.deepEqual(charged[0].slice(1), [100, 60], "reserved 100, used 60");
  told();
});

Deno.test("key sink: the tokens an answer reported go on the key's day; none when unread", () => {
  const { p } = pipeline();
  tell(keySink, p, record({ usedTokens: 42 }), end(200));
  tell(keySink, p, record(), end(200));
  assert.deepEqual(told(), [["addTokens", "k1", 42]]);
});

Deno.test("team sink: the team's slot goes back once; a served answer's tokens go on its budget, a refused one's do not", () => {
  const { p, tokens } = pipeline();
  let released = 0;
  const pass = (requestBytes: number) => ({
    team: { name: "t" },
    left: false,
    releaseSlot: () => released++,
    requestBytes,
  });
  const served = record({ team: pass(400), usedTokens: 90 } as unknown as Partial<Exchange>);
  tell(teamSink, p, served, end(200));
  tell(teamSink, p, served, end(200));
  tell(teamSink, p, record({ team: pass(400) } as unknown as Partial<Exchange>), end(500));
  assert.equal(released, 2, "each request's slot once");
  assert.deepEqual(tokens, [["t", 90]]);
});

Deno.test("attempt metrics sink: each answer by key and status (or why none came), and the time to its headers", () => {
  const { p } = pipeline();
  attemptMetricsSink(p, record({ now: STARTED + 30 } as Partial<Exchange>), {
    keyId: "k1",
    answer: 429,
    sentAt: STARTED,
  });
  attemptMetricsSink(p, record({ upstreamMs: undefined }), {
    keyId: "k2",
    answer: "timeout",
    sentAt: STARTED,
  });
  assert.equal(p.metrics.upstream.get("openai", "k1", "429"), 1);
  assert.equal(p.metrics.upstream.get("openai", "k2", "timeout"), 1);
  assert.match(p.metrics.ttfb.render(), /_count\{service="openai"\} 1\n/, "no headers, no time");
});

Deno.test("attempt minutes sink: an upstream 429 in its minute", () => {
  const { p, minutes } = pipeline();
  const x = record({ now: STARTED + 30 } as Partial<Exchange>);
  attemptMinutesSink(p, x, { keyId: "k1", answer: 429, sentAt: STARTED });
  attemptMinutesSink(p, x, { keyId: "k1", answer: 200, sentAt: STARTED });
  assert.deepEqual(minutes, [["upstream429", "openai", STARTED + 30]]);
});

Deno.test("attempt key sink: every attempt on the key's day, unless the key's rpd pacing counted it", () => {
  const { p } = pipeline();
  const x = record({ now: STARTED + 30 } as Partial<Exchange>);
  attemptKeySink(p, x, { keyId: "k1", answer: 429, sentAt: STARTED });
  attemptKeySink(p, x, { keyId: "k1", answer: 200, sentAt: STARTED });
  assert.deepEqual(told(), [["count", "k1", STARTED + 30], ["count", "k1", STARTED + 30]]);
  const rpd = record({
    now: STARTED + 30,
    rt: { service: { name: "openai", keyQuota: { rpd: 100 } }, keyDays },
  } as unknown as Partial<Exchange>);
  attemptKeySink(p, rpd, { keyId: "k1", answer: 200, sentAt: STARTED });
  assert.deepEqual(told(), []);
});

Deno.test("attempt telemetry sink: a span from the send to now, the model only of a served answer; nothing while off", () => {
  const off = pipeline(false);
  attemptTelemetrySink(off.p, record(), { keyId: "k1", answer: 200, sentAt: STARTED });
  assert.equal(off.telemetry.length, 0);
  const on = pipeline(true);
  attemptTelemetrySink(on.p, record({ attempts: 2 }), {
    keyId: "k1",
    answer: 200,
    sentAt: STARTED,
  });
  attemptTelemetrySink(on.p, record(), { keyId: "k2", answer: "network", sentAt: STARTED });
  assert.deepEqual(
    [on.telemetry[0].startMs, on.telemetry[0].endMs, on.telemetry[0].attempt],
    [STARTED, STARTED + 45, 2],
  );
  assert.equal(on.telemetry[0].model, "gpt-test");
  assert.equal(on.telemetry[1].model, undefined);
  assert.equal(on.telemetry[1].outcome, "network");
});
