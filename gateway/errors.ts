import type { ServiceStyle } from "../config/mod.ts";
import type { HeaderPairs } from "./headers.ts";

/** An error the gateway itself answers with, in neutral form. */
export interface GatewayError {
  status: number;
  message: string;
  /** OpenAI-style `type`; mapped to Anthropic's types on the claude route. */
  type:
    | "authentication_error"
    | "invalid_request_error"
    | "rate_limit_error"
    | "api_error"
    | "not_found_error"
    | "permission_error"
    | "request_too_large";
  code: string;
  retryAfterMs?: number;
  /** Ask the client to close the connection (this instance is shutting down). */
  closeConnection?: boolean;
  /** More fields of the error object (`resetsAt` of an exhausted budget). */
  extra?: Readonly<Record<string, string>>;
}

const encoder = new TextEncoder();

/**
 * Renders an error in the provider's own shape: OpenAI's
 * `{"error":{"message","type","code"}}`, or Anthropic's
 * `{"type":"error","error":{"type","message"}}` for the anthropic style.
 *
 * `headers` (name/value pairs; `content-type` and `retry-after` are added to
 * it) and the body as bytes are what a relayed answer gives `Response` too:
 * a rare answer built another way (a `Headers` from a record, a string body)
 * would reach branches of the runtime's `Response` code that the usual
 * answer never takes, and the first one de-optimizes it for every request.
 */
export function errorResponse(
  style: ServiceStyle,
  err: GatewayError,
  headers: HeaderPairs,
): Response {
  headers.push(["content-type", "application/json"]);
  if (err.retryAfterMs !== undefined) {
    headers.push(["retry-after", String(Math.max(1, Math.ceil(err.retryAfterMs / 1000)))]);
  }
  if (err.closeConnection) headers.push(["connection", "close"]);
  const body = style === "anthropic"
    ? { type: "error", error: { type: err.type, message: err.message, ...err.extra } }
    : {
      error: {
        message: err.message,
        type: err.type === "request_too_large" ? "invalid_request_error" : err.type,
        code: err.code,
        ...err.extra,
      },
    };
  return new Response(encoder.encode(JSON.stringify(body)), { status: err.status, headers });
}
