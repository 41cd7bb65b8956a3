import { type Exchange, handSlotBack } from "../exchange.ts";
import { isoTime, type LogLine } from "../log.ts";
import { accountGroup } from "./group_stage.ts";
import type { StageDeps } from "../stage_deps.ts";
import { leaveTeam } from "./team_stages.ts";
import { chargeKey } from "./key_stages.ts";
import { statusLabel } from "../../status/mod.ts";

/** How a request ended: what its sinks are told, with its record (the exchange). */
export interface RequestEnd {
  status: number;
  /** How it ended (`complete`, `exhausted`, `client_abort`, a relay's end, …): the log's `outcome`. */
  outcome: string;
  /** Bytes of the answer's body relayed, when counted. */
  bytes: number | undefined;
  now: number;
}

/** Told of each request's end, once, after what it held has gone back. */
export type EndSink = (p: StageDeps, x: Exchange, end: RequestEnd) => void;

/**
 * The last stage of every request, however it ended, run once: what the
 * request holds goes back (its service slot), then each sink is told, in
 * order: the team (its slot and place back, its tokens on its budget), the
 * key (its `tpm` charged what the answer used, its tokens on its day), the
 * metrics, the minute counts, OpenTelemetry, and one log line. No secret
 * reaches any of them: the key is its id.
 */
export function account(
  p: StageDeps,
  x: Exchange,
  status: number,
  outcome: string,
  bytes?: number,
  now = p.clock.now(),
): void {
  handSlotBack(x);
  const end: RequestEnd = { status, outcome, bytes, now };
  for (let i = 0; i < END_SINKS.length; i++) END_SINKS[i](p, x, end);
}

/** The team's end: its slot and its place go back; an answer's tokens go on its day's budget. */
export const teamSink: EndSink = (p, x, end) => leaveTeam(p, x, end.status, end.bytes);

/**
 * The key's end: its `tpm` is charged what a served answer used (estimated
 * when unread), and the tokens an answer reported go on the key's day.
 */
export const keySink: EndSink = (_p, x, end) => {
  if (end.status < 400) chargeKey(x, end.bytes ?? 0);
  if (x.usedTokens !== undefined && x.key !== undefined) {
    x.rt.keyDays.addTokens(x.key.id, x.usedTokens);
  }
};

/** This instance's counters: requests by status, the queue wait, the tokens answers reported. */
export const metricsSink: EndSink = (p, x, end) => {
  const service = x.rt.service.name;
  const team = x.team?.team.name ?? "";
  p.metrics.requests.inc(service, team, statusLabel(end.status));
  p.metrics.queueWait.observe(service, x.queueMs / 1000);
  if (x.usedSplit !== undefined) {
    p.metrics.tokens.inc(service, team, "input", x.usedSplit.input);
    p.metrics.tokens.inc(service, team, "output", x.usedSplit.output);
    if (x.usedSplit.cachedInput > 0) {
      p.metrics.tokens.inc(service, team, "cached_input", x.usedSplit.cachedInput);
    }
  } else if (x.usedTokens !== undefined) {
    p.metrics.tokens.inc(service, team, "total", x.usedTokens);
  }
};

/** The deployment's answers per minute (the status chart). */
export const minutesSink: EndSink = (p, x, end) => {
  p.minutes?.answered(x.rt.service.name, end.status, end.now);
};

/** OpenTelemetry's GenAI metrics, when it is on. */
export const telemetrySink: EndSink = (p, x, end) => {
  if (!p.telemetry.enabled) return;
  p.telemetry.request({
    service: x.rt.service.name,
    path: x.target.path,
    // Only a model the provider served: a client's string would make unbounded series.
    model: end.status < 300 ? x.model : undefined,
    durationS: (end.now - x.started) / 1000,
    firstByteS: x.upstreamMs === undefined ? undefined : x.upstreamMs / 1000,
    usage: x.usedSplit,
    status: end.status,
  });
};

/** One log line with what happened (and, for a model group, its target and the targets passed over). */
export const logSink: EndSink = (p, x, end) => {
  const line: LogLine = {
    t: isoTime(end.now),
    id: x.id,
    service: x.rt.service.name,
    team: x.team?.team.name,
    method: x.req.method,
    status: end.status,
    outcome: end.outcome,
    attempts: x.attempts,
    key: x.key?.id,
    queueMs: x.queueMs,
    upstreamMs: x.upstreamMs,
    totalMs: end.now - x.started,
    bytes: end.bytes,
    relay: x.relay,
    client: x.client,
  };
  if (x.group !== undefined) accountGroup(p, x, end.status, line);
  p.log(line);
};

/** Every sink, in the order they are told. */
const END_SINKS: readonly EndSink[] = [
  teamSink,
  keySink,
  metricsSink,
  minutesSink,
  telemetrySink,
  logSink,
];

/** One attempt's end: the key it went with, its answer's status or why none came, when it left. */
export interface AttemptRecord {
  keyId: string;
  answer: number | "timeout" | "network";
  sentAt: number;
}

/** Told of each attempt's answer (or its absence), once. */
export type AttemptSink = (p: StageDeps, x: Exchange, a: AttemptRecord) => void;

/** This instance's counters: the answer by key and status, the time to its headers. */
export const attemptMetricsSink: AttemptSink = (p, x, a) => {
  const service = x.rt.service.name;
  p.metrics.upstreamAnswer(service, a.keyId, a.answer);
  if (x.upstreamMs !== undefined) p.metrics.ttfb.observe(service, x.upstreamMs / 1000);
};

/** The deployment's counts: an upstream 429 in its minute. */
export const attemptMinutesSink: AttemptSink = (p, x, a) => {
  if (a.answer === 429) p.minutes?.upstream429(x.rt.service.name, x.now);
};

/** The attempt on the key's day, unless its `rpd` pacing counted it as it went. */
export const attemptKeySink: AttemptSink = (_p, x, a) => {
  if (x.rt.service.keyQuota.rpd === undefined) x.rt.keyDays.count(a.keyId, x.now);
};

/** OpenTelemetry's span of the attempt, when it is on; the model only of a served answer. */
export const attemptTelemetrySink: AttemptSink = (p, x, a) => {
  if (!p.telemetry.enabled) return;
  p.telemetry.attempt({
    service: x.rt.service.name,
    keyId: a.keyId,
    model: typeof a.answer === "number" && a.answer < 300 ? x.model : undefined,
    attempt: x.attempts,
    startMs: a.sentAt,
    endMs: p.clock.now(),
    outcome: a.answer,
  });
};

/** Every attempt sink, in the order they are told. */
const ATTEMPT_SINKS: readonly AttemptSink[] = [
  attemptMetricsSink,
  attemptMinutesSink,
  attemptKeySink,
  attemptTelemetrySink,
];

/** Tells the attempt sinks of an upstream answer (or its absence) to a request sent at `sentAt`. */
export function countUpstream(
  p: StageDeps,
  x: Exchange,
  keyId: string,
  res: Response | "timeout" | "network",
  sentAt: number,
): void {
  const a: AttemptRecord = { keyId, answer: typeof res === "string" ? res : res.status, sentAt };
  for (let i = 0; i < ATTEMPT_SINKS.length; i++) ATTEMPT_SINKS[i](p, x, a);
}
