/**
 * The last event of an event stream kvgate ends before the upstream did: an
 * error in the provider's own stream shape, so that the client's SDK raises
 * an error it can retry rather than taking half an answer for a whole one.
 * (A clean end after a comment line — what a drain sent before — is a
 * finished answer to the OpenAI and Anthropic SDKs and to LangChain.)
 *
 * The events are encoded once per style and reason; ending a stream
 * allocates nothing.
 *
 * @module
 */
import type { ServiceStyle } from "../../config/mod.ts";

/** Why an event stream was ended before the upstream ended it. */
export type CutShort = "drained" | "idle_timeout" | "upstream_error";

/** The bytes of the last event, by reason. */
export type StopEvents = Readonly<Record<CutShort, Uint8Array>>;

const REASONS: Record<CutShort, { code: string; message: string; anthropicType: string }> = {
  drained: {
    code: "gateway_closing",
    message: "This kvgate instance is shutting down and cut the answer short: retry the request.",
    anthropicType: "overloaded_error",
  },
  idle_timeout: {
    code: "upstream_timeout",
    message: "The upstream sent nothing for too long: kvgate cut the answer short.",
    anthropicType: "api_error",
  },
  upstream_error: {
    code: "upstream_error",
    message: "The upstream connection failed mid-answer: the answer was cut short.",
    anthropicType: "api_error",
  },
};

function event(style: ServiceStyle, why: CutShort): string {
  const { code, message, anthropicType } = REASONS[why];
  switch (style) {
    case "anthropic":
      return `event: error\ndata: ${
        JSON.stringify({ type: "error", error: { type: anthropicType, message } })
      }\n\n`;
    case "gemini":
      // Google's own error shape, as its streamed answers carry one.
      return `data: ${
        JSON.stringify({ error: { code: 503, message, status: "UNAVAILABLE" } })
      }\n\n`;
    default:
      return `data: ${JSON.stringify({ error: { message, type: "server_error", code } })}\n\n`;
  }
}

const encoder = new TextEncoder();
const made = new Map<ServiceStyle, StopEvents>();

/** The stop events of `style`, made once. */
export function stopEvents(style: ServiceStyle): StopEvents {
  let events = made.get(style);
  if (events === undefined) {
    events = {
      drained: encoder.encode(event(style, "drained")),
      idle_timeout: encoder.encode(event(style, "idle_timeout")),
      upstream_error: encoder.encode(event(style, "upstream_error")),
    };
    made.set(style, events);
  }
  return events;
}
