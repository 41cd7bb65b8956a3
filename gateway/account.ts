import { type Exchange, handSlotBack } from "./exchange.ts";
import { isoTime, type LogLine } from "./log.ts";
import { accountGroup } from "./group_stage.ts";
import type { Pipeline } from "./pipeline.ts";
import { leaveTeam } from "./team_stages.ts";
import { chargeKey } from "./key_stages.ts";
import { statusLabel } from "../status/mod.ts";

/**
 * The last stage of every request, however it ended, run once: what the
 * request holds goes back (its service slot, its team's slot and place,
 * the key's unspent tokens), then one log line with what happened (status,
 * outcome, attempts, key id, queue wait, upstream time, total time, bytes)
 * and the counts. No secret reaches it: the key is its id.
 */
export function account(
  p: Pipeline,
  x: Exchange,
  status: number,
  outcome: string,
  bytes?: number,
  now = p.clock.now(),
): void {
  handSlotBack(x);
  leaveTeam(p, x, status, bytes);
  if (status < 400) chargeKey(x, bytes ?? 0);
  const service = x.rt.service.name;
  const team = x.team?.team.name ?? "";
  p.metrics.requests.inc(service, team, statusLabel(status));
  p.minutes?.answered(service, status, now);
  p.metrics.queueWait.observe(service, x.queueMs / 1000);
  if (x.usedTokens !== undefined && x.key !== undefined) {
    p.minutes?.keyUsed(service, x.key.id, x.rt.service.dayResetMs, now, 0, x.usedTokens);
  }
  if (x.usedSplit !== undefined) {
    p.metrics.tokens.inc(service, team, "input", x.usedSplit.input);
    p.metrics.tokens.inc(service, team, "output", x.usedSplit.output);
    if (x.usedSplit.cachedInput > 0) {
      p.metrics.tokens.inc(service, team, "cached_input", x.usedSplit.cachedInput);
    }
  } else if (x.usedTokens !== undefined) {
    p.metrics.tokens.inc(service, team, "total", x.usedTokens);
  }
  if (p.telemetry.enabled) {
    p.telemetry.request({
      service,
      path: x.target.path,
      // Only a model the provider served: a client's string would make unbounded series.
      model: status < 300 ? x.model : undefined,
      durationS: (now - x.started) / 1000,
      firstByteS: x.upstreamMs === undefined ? undefined : x.upstreamMs / 1000,
      usage: x.usedSplit,
      status,
    });
  }
  const line: LogLine = {
    t: isoTime(now),
    id: x.id,
    service,
    team: x.team?.team.name,
    method: x.req.method,
    status,
    outcome,
    attempts: x.attempts,
    key: x.key?.id,
    queueMs: x.queueMs,
    upstreamMs: x.upstreamMs,
    totalMs: now - x.started,
    bytes,
    relay: x.relay,
    client: x.client,
  };
  if (x.group !== undefined) accountGroup(p, x, status, line);
  p.log(line);
}

/** Counts an upstream answer (or its absence) to a request sent at `sentAt`: metrics, minute counts, a span. */
export function countUpstream(
  p: Pipeline,
  x: Exchange,
  keyId: string,
  res: Response | "timeout" | "network",
  sentAt: number,
): void {
  const service = x.rt.service.name;
  p.metrics.upstreamAnswer(service, keyId, typeof res === "string" ? res : res.status);
  if (x.upstreamMs !== undefined) p.metrics.ttfb.observe(service, x.upstreamMs / 1000);
  if (typeof res !== "string" && res.status === 429) p.minutes?.upstream429(service, x.now);
  p.minutes?.keyUsed(service, keyId, x.rt.service.dayResetMs, x.now, 1, 0);
  if (p.telemetry.enabled) {
    p.telemetry.attempt({
      service,
      keyId,
      model: typeof res !== "string" && res.status < 300 ? x.model : undefined,
      attempt: x.attempts,
      startMs: sentAt,
      endMs: p.clock.now(),
      outcome: typeof res === "string" ? res : res.status,
    });
  }
}
