/**
 * OpenTelemetry's GenAI metrics and a span per upstream attempt, through
 * `@opentelemetry/api`. Deno exports them, with its own HTTP and fetch
 * spans, when started with `OTEL_DENO=true` (and the usual `OTEL_EXPORTER_OTLP_*`
 * variables); otherwise this is off and the request path never calls it.
 *
 * @module
 */
import { type Histogram, metrics, trace, type Tracer } from "@opentelemetry/api";
import type { TokenUsage } from "../providers/mod.ts";

/** What one request tells the GenAI metrics. */
export interface GenAiRequest {
  service: string;
  path: string;
  model: string | undefined;
  /** Seconds from the request's arrival to its answer's end. */
  durationS: number;
  /** Seconds from sending upstream to the response headers (the first token's bound). */
  firstByteS: number | undefined;
  usage: TokenUsage | undefined;
  status: number;
}

/** What one upstream attempt tells its span. */
export interface AttemptSpan {
  service: string;
  keyId: string;
  model: string | undefined;
  attempt: number;
  startMs: number;
  endMs: number;
  /** The HTTP status, or `timeout` / `network`. */
  outcome: number | string;
}

/** `gen_ai.provider.name` of the built-in services; an added one is named by its service. */
const PROVIDERS: Record<string, string> = {
  claude: "anthropic",
  gemini: "gcp.gemini",
  openai: "openai",
  groq: "groq",
  deepseek: "deepseek",
  xai: "x_ai",
  cerebras: "cerebras",
  openrouter: "openrouter",
};

/** `gen_ai.operation.name` from the path the client called. */
function operationOf(path: string): string {
  if (path.endsWith("/chat/completions") || path.endsWith("/messages")) return "chat";
  if (path.endsWith("/embeddings")) return "embeddings";
  if (path.endsWith("/completions")) return "text_completion";
  if (/:(?:stream)?[gG]enerateContent$/.test(path)) return "generate_content";
  return "other";
}

const MODEL = /"model"\s*:\s*"([^"\\]{1,200})"/;

/** The `model` a JSON request body names, read with a pattern from its first 64 KiB. */
export function modelOf(body: Uint8Array | undefined): string | undefined {
  if (body === undefined) return undefined;
  return MODEL.exec(new TextDecoder().decode(body.subarray(0, 65_536)))?.[1];
}

/** The GenAI semantic-convention instruments, and the attempt spans. */
export class GenAiTelemetry {
  readonly enabled: boolean;
  #tokens: Histogram | undefined;
  #ttft: Histogram | undefined;
  #duration: Histogram | undefined;
  #tracer: Tracer | undefined;

  /** @param enabled Whether Deno exports telemetry (`OTEL_DENO=true`). */
  constructor(enabled: boolean) {
    this.enabled = enabled;
    if (!enabled) return;
    const meter = metrics.getMeter("kvgate");
    this.#tokens = meter.createHistogram("gen_ai.client.token.usage", {
      unit: "{token}",
      description: "Input and output tokens per request, as the provider reported them.",
    });
    this.#ttft = meter.createHistogram("gen_ai.server.time_to_first_token", {
      unit: "s",
      description: "Time from sending the request upstream to its response headers.",
    });
    this.#duration = meter.createHistogram("gen_ai.server.request.duration", {
      unit: "s",
      description: "Time from the request's arrival to the end of its answer.",
    });
    this.#tracer = trace.getTracer("kvgate");
  }

  /** Records one answered request. */
  request(r: GenAiRequest): void {
    if (!this.enabled) return;
    const attributes: Record<string, string | number> = {
      "gen_ai.provider.name": PROVIDERS[r.service] ?? r.service,
      "gen_ai.operation.name": operationOf(r.path),
      "kvgate.service": r.service,
    };
    if (r.model !== undefined) attributes["gen_ai.request.model"] = r.model;
    if (r.status >= 400) attributes["error.type"] = String(r.status);
    this.#duration!.record(r.durationS, attributes);
    if (r.firstByteS !== undefined) this.#ttft!.record(r.firstByteS, attributes);
    if (r.usage) {
      this.#tokens!.record(r.usage.input, { ...attributes, "gen_ai.token.type": "input" });
      this.#tokens!.record(r.usage.output, { ...attributes, "gen_ai.token.type": "output" });
      if (r.usage.cachedInput > 0) {
        this.#tokens!.record(r.usage.cachedInput, {
          ...attributes,
          "gen_ai.token.type": "cached_input",
        });
      }
    }
  }

  /** One span per upstream attempt: which key (its id), and how it ended. */
  attempt(a: AttemptSpan): void {
    if (!this.enabled) return;
    const span = this.#tracer!.startSpan(`kvgate upstream ${a.service}`, {
      startTime: a.startMs,
      attributes: {
        "gen_ai.provider.name": PROVIDERS[a.service] ?? a.service,
        "kvgate.service": a.service,
        "kvgate.key.id": a.keyId,
        "kvgate.attempt": a.attempt,
        "kvgate.outcome": String(a.outcome),
        ...(a.model === undefined ? {} : { "gen_ai.request.model": a.model }),
        ...(typeof a.outcome === "number" ? { "http.response.status_code": a.outcome } : {}),
      },
    });
    if (typeof a.outcome !== "number" || a.outcome >= 400) {
      span.setStatus({ code: 2, message: String(a.outcome) });
    }
    span.end(a.endMs);
  }
}
