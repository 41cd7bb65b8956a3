import type { RefusalReason } from "../limiter/mod.ts";
import type { GatewayError } from "./errors.ts";

/**
 * Every error kvgate answers itself, in one place: its code, status, type
 * and message. The stages name an entry; `errorResponse()` (errors.ts)
 * renders it in the provider's shape. The README's table lists the same.
 */
export const gatewayErrors = {
  notConfigured: (): GatewayError => ({
    status: 503,
    type: "api_error",
    code: "gateway_not_configured",
    message:
      "This gateway has no ACCESS_PASSWORD. The operator must set it in the deployment's environment variables.",
  }),
  /** No credential (`missing`: strangers get the disguise instead), or a wrong one. */
  badCredential: (missing: boolean): GatewayError => ({
    status: 401,
    type: "authentication_error",
    code: missing ? "missing_api_key" : "invalid_api_key",
    message: missing
      ? "Missing API key: send the gateway password as a Bearer token or x-api-key."
      : "Incorrect API key: use the gateway password.",
  }),
  /** A method `fetch` cannot send upstream (TRACE, CONNECT). */
  methodNotAllowed: (method: string): GatewayError => ({
    status: 405,
    type: "invalid_request_error",
    code: "method_not_allowed",
    message: `${method} is not forwarded.`,
  }),
  /** This instance holds as many request bodies as its memory budget allows. */
  busy: (): GatewayError => ({
    status: 429,
    type: "rate_limit_error",
    code: "gateway_busy",
    message: "This gateway instance holds as many request bodies as it may; retry shortly.",
    retryAfterMs: 1000,
  }),
  /** `?key=` on a service that does not take it (`keyInQuery` false). */
  keyInQueryRefused: (): GatewayError => ({
    status: 401,
    type: "authentication_error",
    code: "invalid_api_key",
    message:
      "This gateway does not take ?key= in the URL (URLs end up in logs and traces): send the key in the x-goog-api-key header.",
  }),
  /** An address that presented too many wrong credentials, shut out for a while. */
  tooManyFailedLogins: (retryAfterMs: number): GatewayError => ({
    status: 429,
    type: "rate_limit_error",
    code: "too_many_failed_logins",
    message: "Too many wrong API keys from this address; retry later.",
    retryAfterMs,
  }),
  invalidPath: (message: string): GatewayError => ({
    status: 400,
    type: "invalid_request_error",
    code: "invalid_path",
    message,
  }),
  unknownService: (name: string, prefixes: string): GatewayError => ({
    status: 404,
    type: "invalid_request_error",
    code: "unknown_service",
    message: `No service at /${name}. Valid prefixes: ${prefixes}.`,
  }),
  noKeys: (service: string, envKey: string): GatewayError => ({
    status: 503,
    type: "api_error",
    code: "no_keys",
    message: `No keys are configured for ${service}: set ${envKey}.`,
  }),
  tooLarge: (maxBodyBytes: number): GatewayError => ({
    status: 413,
    type: "request_too_large",
    code: "request_too_large",
    message: `The request body is larger than ${maxBodyBytes} bytes.`,
  }),
  /** A request whose estimated tokens are more than any key of the service grants per minute. */
  tokensTooLarge: (service: string, tokens: number, perKey: number): GatewayError => ({
    status: 413,
    type: "request_too_large",
    code: "request_too_large",
    message:
      `This request is estimated at ${tokens} input tokens, more than a ${service} key grants in a minute (${perKey}); send a shorter one.`,
  }),
  unreadableBody: (): GatewayError => ({
    status: 400,
    type: "invalid_request_error",
    code: "unreadable_body",
    message: "The request body could not be read.",
  }),
  /** A limiter refusal (queue full, wait too long, client gone, shutting down). */
  refused: (reason: RefusalReason, service: string, retryAfterMs: number): GatewayError =>
    reason === "closing" ? CLOSING : reason === "aborted" ? CLIENT_CLOSED : {
      status: 429,
      type: "rate_limit_error",
      code: `gateway_${reason}`,
      message: reason === "queue_full"
        ? `The gateway queue for ${service} is full; retry later.`
        : `Waited too long for capacity on ${service}; retry later.`,
      retryAfterMs,
    },
  closing: (): GatewayError => CLOSING,
  clientClosed: (): GatewayError => CLIENT_CLOSED,
  keysResting: (service: string, retryAfterMs: number): GatewayError => ({
    status: 429,
    type: "rate_limit_error",
    code: "gateway_keys_resting",
    message:
      `Every ${service} key is resting (its quota for now is spent, or the upstream refused it); retry later.`,
    retryAfterMs,
  }),
  servicePaused: (service: string): GatewayError => ({
    status: 503,
    type: "api_error",
    code: "service_paused",
    message: `${service} is paused by the gateway's admin; retry later.`,
    retryAfterMs: 60_000,
  }),
  providerBackoff: (service: string, retryAfterMs: number): GatewayError => ({
    status: 429,
    type: "rate_limit_error",
    code: "gateway_provider_backoff",
    message:
      `${service} refused every key at once (a provider-wide limit): kvgate pauses it; retry later.`,
    retryAfterMs,
  }),
  upstreamTimeout: (service: string, firstByteTimeoutMs: number): GatewayError => ({
    status: 504,
    type: "api_error",
    code: "upstream_timeout",
    message: `The ${service} upstream sent no response within ${firstByteTimeoutMs} ms.`,
  }),
  /** The provider refused the gateway's key (401: a 502 here) or the request made with it (403). */
  upstreamRefused: (service: string, status: number, code: string | undefined): GatewayError => ({
    status: status === 401 ? 502 : 403,
    type: status === 401 ? "api_error" : "permission_error",
    code: status === 401 ? "upstream_key_refused" : "upstream_forbidden",
    message: status === 401
      ? `The ${service} provider refused the gateway's keys (${
        code ?? "401"
      }); the gateway's admin can see which on the status page.`
      : `The ${service} provider refused this request with the gateway's key (${code ?? "403"}).`,
  }),
  upstreamUnreachable: (service: string): GatewayError => ({
    status: 502,
    type: "api_error",
    code: "upstream_unreachable",
    message: `The ${service} upstream could not be reached.`,
  }),
  /** A team token used outside its scope: a service or a model it may not use. */
  teamForbidden: (team: string, what: string, allowed: readonly string[]): GatewayError => ({
    status: 403,
    type: "permission_error",
    code: "team_forbidden",
    message: `Team ${team} may not use ${what}. Allowed: ${allowed.join(", ")}.`,
  }),
  /** A team token on an endpoint outside its `paths`. */
  teamEndpointForbidden: (
    team: string,
    endpoint: string,
    service: string,
    paths: readonly string[] | undefined,
  ): GatewayError => ({
    status: 403,
    type: "permission_error",
    code: "team_forbidden",
    message: `Team ${team} may not call ${endpoint} on ${service}. Allowed: ${
      paths?.join(", ") ?? "the inference endpoints and model lists (the default)"
    }; the admin can add it to the team's "paths".`,
  }),
  /** A refusal while waiting for the team's own pacing. */
  teamRefused: (reason: RefusalReason, team: string, retryAfterMs: number): GatewayError =>
    reason === "closing" ? CLOSING : reason === "aborted" ? CLIENT_CLOSED : {
      status: 429,
      type: "rate_limit_error",
      code: "team_rate_limited",
      message: `Team ${team} is over its own rate limit here; retry later.`,
      retryAfterMs,
    },
  budgetExhausted: (team: string, retryAfterMs: number, resetsAt: number): GatewayError => ({
    status: 429,
    type: "rate_limit_error",
    code: "team_budget_exhausted",
    message: `Team ${team} has spent its daily budget; it resets at ${
      new Date(resetsAt).toISOString()
    }.`,
    retryAfterMs,
    extra: { resetsAt: new Date(resetsAt).toISOString() },
  }),
  internal: (): GatewayError => ({
    status: 500,
    type: "api_error",
    code: "gateway_error",
    message: "Internal gateway error.",
  }),
} as const;

/** The answer while this instance drains: go elsewhere, now. */
const CLOSING: GatewayError = Object.freeze({
  status: 503,
  type: "api_error",
  code: "gateway_closing",
  message: "This gateway instance is shutting down; retry.",
  retryAfterMs: 1000,
  closeConnection: true,
});

const CLIENT_CLOSED: GatewayError = Object.freeze({
  status: 499,
  type: "api_error",
  code: "client_closed",
  message: "Client closed.",
});
