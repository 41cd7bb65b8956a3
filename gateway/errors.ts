import type { ServiceStyle } from "../config/mod.ts";

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
    | "request_too_large";
  code: string;
  retryAfterMs?: number;
}

/**
 * Renders an error in the provider's own shape: OpenAI's
 * `{"error":{"message","type","code"}}`, or Anthropic's
 * `{"type":"error","error":{"type","message"}}` for the anthropic style.
 */
export function errorResponse(style: ServiceStyle, err: GatewayError, headers: Headers): Response {
  headers.set("content-type", "application/json");
  if (err.retryAfterMs !== undefined) {
    headers.set("retry-after", String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
  }
  const body = style === "anthropic"
    ? { type: "error", error: { type: err.type, message: err.message } }
    : {
      error: {
        message: err.message,
        type: err.type === "request_too_large" ? "invalid_request_error" : err.type,
        code: err.code,
      },
    };
  return new Response(JSON.stringify(body), { status: err.status, headers });
}
