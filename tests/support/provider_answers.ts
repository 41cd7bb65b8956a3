/**
 * How OpenAI, Anthropic and Gemini answer the requests of the security
 * review's reproductions (../shared/security_review.md, H1): their real
 * error bodies, as a pure function of the request, for the in-process fake
 * upstream and the mock provider alike.
 *
 * @module
 */

/** What the fake provider knows. */
export interface ProviderRules {
  /** Keys it accepts; any other gets the provider's invalid-key answer. */
  keys: readonly string[];
}

const KNOWN_FIELDS = new Set([
  "model",
  "messages",
  "max_tokens",
  "stream",
  "temperature",
  "user",
  "system",
  "stream_options",
  "contents",
]);

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });

/** OpenAI's 401 for a key it does not know, with the key masked as OpenAI masks it. */
export function openaiBadKey(key: string): Response {
  const masked = `${key.slice(0, 8)}********${key.slice(-4)}`;
  return json(401, {
    error: {
      message:
        `Incorrect API key provided: ${masked}. You can find your API key at https://platform.openai.com/account/api-keys.`,
      type: "invalid_request_error",
      param: null,
      code: "invalid_api_key",
    },
  });
}

/** The key a request carries, wherever its style puts it. */
export function keyOfRequest(req: Request): string | undefined {
  const auth = req.headers.get("authorization");
  if (auth?.startsWith("Bearer ")) return auth.slice(7);
  return req.headers.get("x-api-key") ?? req.headers.get("x-goog-api-key") ?? undefined;
}

/** The answer a provider gives `req` (whose body text is `body`). */
export function providerAnswer(rules: ProviderRules, req: Request, body: string): Response {
  const url = new URL(req.url);
  const key = keyOfRequest(req) ?? "";
  const anthropic = url.pathname.endsWith("/messages");
  if (!rules.keys.includes(key)) {
    if (anthropic || req.headers.has("anthropic-version")) {
      return json(401, {
        type: "error",
        error: { type: "authentication_error", message: "invalid x-api-key" },
      });
    }
    return openaiBadKey(key);
  }
  if (anthropic && req.headers.has("origin")) {
    return json(401, {
      type: "error",
      error: {
        type: "authentication_error",
        message: "CORS requests must set 'anthropic-dangerous-direct-browser-access' header",
      },
    });
  }
  if (req.headers.has("openai-organization")) {
    return json(401, {
      error: {
        message: "OpenAI-Organization header should match organization for API key",
        type: "invalid_request_error",
        param: null,
        code: "mismatched_organization",
      },
    });
  }
  if (req.method === "GET") return json(200, { object: "list", data: [{ id: "m" }] });
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(body);
  } catch { /* an empty body */ }
  const unknown = Object.keys(parsed).find((k) => !KNOWN_FIELDS.has(k));
  if (unknown !== undefined) {
    return anthropic
      ? json(400, {
        type: "error",
        error: {
          type: "invalid_request_error",
          message: `${unknown}: Extra inputs are not permitted`,
        },
      })
      : json(400, {
        error: {
          message: `Unrecognized request argument supplied: ${unknown}`,
          type: "invalid_request_error",
          param: null,
          code: null,
        },
      });
  }
  if (typeof parsed.max_tokens === "number" && parsed.max_tokens > 100_000) {
    return json(429, {
      error: {
        message:
          `Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested ${parsed.max_tokens}. The input or output tokens must be reduced in order to run successfully.`,
        type: "tokens",
        param: null,
        code: "rate_limit_exceeded",
      },
    });
  }
  return json(200, {
    id: "c",
    object: "chat.completion",
    choices: [{ index: 0, message: { role: "assistant", content: "hi" } }],
    usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
  }, {
    "set-cookie": "__cf_bm=secret-cookie; path=/",
    "openai-organization": "org-owner",
    "openai-project": "proj-owner",
    "anthropic-organization-id": "owner-org-id",
    "server": "cloudflare",
    "x-ratelimit-remaining-requests": "59",
  });
}

const GEMINI_QUOTA_MESSAGE =
  "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.";

/** The body of Gemini's 429 for one quota id, as it arrives (provider_limits.md). */
export function gemini429Body(quotaId: string, retryDelay: string): string {
  return JSON.stringify({
    error: {
      code: 429,
      message: GEMINI_QUOTA_MESSAGE,
      status: "RESOURCE_EXHAUSTED",
      details: [
        {
          "@type": "type.googleapis.com/google.rpc.QuotaFailure",
          violations: [{
            quotaMetric: "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            quotaId,
            quotaDimensions: { location: "global", model: "gemini-2.5-flash" },
            quotaValue: "10",
          }],
        },
        { "@type": "type.googleapis.com/google.rpc.Help", links: [] },
        { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay },
      ],
    },
  });
}

/** Gemini's 429 for one quota id, as a provider's answer. */
export function gemini429(quotaId: string, retryDelay: string): Response {
  return new Response(gemini429Body(quotaId, retryDelay), {
    status: 429,
    headers: { "content-type": "application/json" },
  });
}
