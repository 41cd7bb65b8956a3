import type { Lifecycle } from "./lifecycle.ts";
import type { GatewayConfig, ServiceStyle } from "../config/mod.ts";
import { stopEvents } from "./stages/stream_end.ts";
import { type Clock, type DayBudgets, TimeoutSweeper } from "../limiter/mod.ts";
import type { Drain } from "./drain.ts";
import { LoginGuard } from "./stages/login_guard.ts";
import { BodyBudget } from "./stages/body_budget.ts";
import type { LogLine } from "./log.ts";
import { type RelayOptions, silenceSweeper } from "./stages/relay.ts";
import type { ServiceRuntime } from "./runtime.ts";
import type { TeamRegistry } from "../teams/mod.ts";
import { GenAiTelemetry, Metrics, type MinuteCounts, type StatusBoard } from "../status/mod.ts";

/** The teams' shared parts: who they are and what they have spent. */
export interface TeamServices {
  registry: TeamRegistry;
  budgets: DayBudgets;
}

/** What the request pipeline needs; everything is injected. */
export interface HandlerDeps {
  config: GatewayConfig;
  runtimes: ReadonlyMap<string, ServiceRuntime>;
  fetch: typeof fetch;
  clock: Clock;
  log: (line: LogLine) => void;
  random: () => number;
  /** Counts responses in flight; once closing, new requests are refused. */
  drain: Drain;
  /** Teams, when the gateway has any way to know them. */
  teams?: TeamServices;
  /** This instance's counters and histograms. Default: a fresh set. */
  metrics?: Metrics;
  /** The deployment's status, for the admin's status and metrics paths. */
  status?: StatusBoard;
  /** Answers per service and minute, for the status page's chart. */
  minutes?: MinuteCounts;
  /** OpenTelemetry's GenAI metrics and attempt spans. Default: off. */
  telemetry?: GenAiTelemetry;
  /** The background work, woken by each request on a service path. */
  lifecycle?: Lifecycle;
}

/** The dependencies plus what every stage shares, made once per handler. */
export interface StageDeps extends HandlerDeps {
  /** One timer for every request's first-byte timeout, at most 1/20 of it late (≤ 1 s). */
  firstByteTimeouts: TimeoutSweeper;
  /**
   * How relayed bodies are passed on: SSE streams, by the service's style
   * (the error event a stream cut short ends with), and other bodies of
   * unknown length.
   */
  sseRelay: Readonly<Record<ServiceStyle, RelayOptions>>;
  bodyRelay: RelayOptions;
  metrics: Metrics;
  telemetry: GenAiTelemetry;
  /** Refused credentials per client address (see login_guard.ts). */
  logins: LoginGuard;
  /** The bytes of request bodies this instance holds (see body_budget.ts). */
  bodies: BodyBudget;
}

/** Builds the shared part of the pipeline from its dependencies. */
export function createStageDeps(deps: HandlerDeps): StageDeps {
  const { config, clock, drain } = deps;
  const bodyRelay = {
    idleTimeoutMs: config.idleTimeoutMs,
    clock,
    timeouts: silenceSweeper(clock, config.idleTimeoutMs),
    eventStream: false,
    drain,
  };
  const sse = (style: ServiceStyle) => ({
    ...bodyRelay,
    eventStream: true,
    stops: stopEvents(style),
  });
  return {
    ...deps,
    firstByteTimeouts: new TimeoutSweeper(
      clock,
      Math.min(1000, Math.max(5, config.firstByteTimeoutMs / 20)),
    ),
    sseRelay: { openai: sse("openai"), anthropic: sse("anthropic"), gemini: sse("gemini") },
    bodyRelay,
    metrics: deps.metrics ?? new Metrics(),
    telemetry: deps.telemetry ?? new GenAiTelemetry(false),
    logins: new LoginGuard(),
    bodies: new BodyBudget(config.bodyBudgetBytes),
  };
}
