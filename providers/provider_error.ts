/**
 * The structured part of a provider's error body: the fields the provider
 * fills in itself (`code`, `type`, `status`, Gemini's `details[]`), never
 * the free-text `message`, which can echo what the client sent (an unknown
 * field's name, a model name). Pure functions.
 *
 * Shapes read:
 * - OpenAI and compatible: `{"error": {"message", "type", "code", "param"}}`;
 * - Anthropic: `{"type": "error", "error": {"type", "message"}}`;
 * - Gemini: `{"error": {"code", "message", "status", "details": [...]}}`, or
 *   the same inside a one-element array (its OpenAI-compatible path);
 * - OpenRouter: `{"error": {"code": 402, "message", "metadata"}}`.
 *
 * @module
 */

/** What a provider's error body says in its structured fields. */
export interface ProviderError {
  /** `error.code` when a string (OpenAI's `invalid_api_key`, `insufficient_quota`, …). */
  code: string | undefined;
  /** `error.type` (OpenAI's or Anthropic's: `authentication_error`, `billing_error`, …). */
  type: string | undefined;
  /** `error.status` (Gemini's `RESOURCE_EXHAUSTED`, `INVALID_ARGUMENT`, …). */
  status: string | undefined;
  /** Gemini's `google.rpc.ErrorInfo` reasons (`API_KEY_INVALID`). */
  reasons: string[];
  /** Gemini's `google.rpc.QuotaFailure` quota ids (`…PerDay…`, `…PerMinute…`). */
  quotaIds: string[];
  /** Gemini's `google.rpc.RetryInfo.retryDelay`, in ms. */
  retryDelayMs: number | undefined;
  /** The message, for the few provider-made sentences matched where only the safe side depends on them. */
  message: string;
}

const EMPTY: ProviderError = Object.freeze({
  code: undefined,
  type: undefined,
  status: undefined,
  reasons: [],
  quotaIds: [],
  retryDelayMs: undefined,
  message: "",
}) as ProviderError;

function str(v: unknown): string | undefined {
  return typeof v === "string" && v.length <= 200 ? v : undefined;
}

/** A protobuf Duration as JSON (`"22s"`, `"1.5s"`), in ms. */
function protoDuration(v: unknown): number | undefined {
  if (typeof v !== "string") return undefined;
  const m = /^(\d+(?:\.\d+)?)s$/.exec(v.trim());
  return m ? Math.round(Number(m[1]) * 1000) : undefined;
}

/** Reads the structured fields of an error body; every field empty when it is not JSON. */
export function readProviderError(body: string): ProviderError {
  if (body === "" || (body[0] !== "{" && body[0] !== "[" && !/^\s*[{[]/.test(body))) return EMPTY;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return EMPTY;
  }
  if (Array.isArray(parsed)) parsed = parsed[0];
  if (typeof parsed !== "object" || parsed === null) return EMPTY;
  const error = (parsed as Record<string, unknown>).error;
  if (typeof error !== "object" || error === null) return EMPTY;
  const e = error as Record<string, unknown>;
  const out: ProviderError = {
    code: str(e.code),
    type: str(e.type),
    status: str(e.status),
    reasons: [],
    quotaIds: [],
    retryDelayMs: undefined,
    message: typeof e.message === "string" ? e.message : "",
  };
  if (!Array.isArray(e.details)) return out;
  for (const d of e.details) {
    if (typeof d !== "object" || d === null) continue;
    const detail = d as Record<string, unknown>;
    const kind = String(detail["@type"] ?? "");
    if (kind.endsWith("google.rpc.ErrorInfo")) {
      const reason = str(detail.reason);
      if (reason) out.reasons.push(reason);
    } else if (kind.endsWith("google.rpc.QuotaFailure") && Array.isArray(detail.violations)) {
      for (const v of detail.violations) {
        const id = str((v as Record<string, unknown> | null)?.quotaId);
        if (id) out.quotaIds.push(id);
      }
    } else if (kind.endsWith("google.rpc.RetryInfo")) {
      out.retryDelayMs = protoDuration(detail.retryDelay);
    }
  }
  return out;
}

/** Codes and types that say the key's account cannot pay. */
const KEY_UNFUNDED = new Set([
  "insufficient_quota",
  "billing_error",
  "billing_hard_limit_reached",
  "billing_not_active",
]);

/**
 * Anthropic's 401 to a request carrying `Origin` without its opt-in header:
 * the request's fault (a browser's), said only in the message. Matching it
 * only ever keeps a key from resting.
 */
export function saysCorsRefusal(e: ProviderError): boolean {
  return /CORS requests must set/i.test(e.message);
}

/** The error says the key's account has no quota or credit left. */
export function saysKeyUnfunded(e: ProviderError): boolean {
  return KEY_UNFUNDED.has(e.code ?? "") || KEY_UNFUNDED.has(e.type ?? "");
}

/**
 * The request itself is too large for any key (OpenAI's 429 "Request too
 * large … on tokens per min"): matched on the provider's sentence, which
 * only ever keeps a key from resting, never makes one rest.
 */
export function saysRequestTooLarge(e: ProviderError): boolean {
  return /^Request too large/i.test(e.message) || e.code === "request_too_large" ||
    e.type === "request_too_large";
}

/** Gemini's quota ids name a daily window (`GenerateRequestsPerDayPerProjectPerModel-FreeTier`). */
export function saysDailyQuota(e: ProviderError): boolean {
  return e.quotaIds.some((id) => /PerDay/.test(id));
}
