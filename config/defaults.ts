/**
 * The services kvgate knows without configuration, and the gateway-wide
 * defaults. Figures follow the original gateway's tuning table.
 *
 * @module
 */

import type { KeyQuota } from "../keys/mod.ts";
import type { RateLimitDialect } from "../providers/mod.ts";

/** How a service authenticates and shapes its errors. */
export type ServiceStyle = "openai" | "anthropic" | "gemini";

/**
 * How a streamed answer reaches the client. `"native"` (the default): handed
 * to the runtime as it is, at a bare proxy's CPU cost, unless something
 * must read it (a team's tokens budget, a key's `tpm`, OpenTelemetry's
 * token metrics) — then it is observed. `"observe"`: always through kvgate,
 * chunk by chunk (idle timeout, byte count, usage, ended with an error
 * event by a drain).
 */
export type StreamRelay = "observe" | "native";

/** One upstream provider as configured. */
export interface ServiceConfig {
  /** Absolute http(s) URL of the upstream; the client's path is appended to it. */
  target: string;
  /** Environment variable holding this service's keys (comma or newline separated). */
  envKey: string;
  /** Tokens added to the bucket per second: the long-run request rate. */
  rps: number;
  /** Bucket capacity: how many requests may leave at once. */
  burst: number;
  /** Requests in flight to the upstream at once, across the deployment. */
  maxConn: number;
  /** Auth header placement and error shape; "openai" for any OpenAI-compatible upstream. */
  style: ServiceStyle;
  /** How streamed answers are relayed (see {@linkcode StreamRelay}). Default "native". */
  streamRelay: StreamRelay;
  /**
   * What the provider grants each key: `{rpm, rpd, tpm}`, any subset.
   * Default `{}` (learned from the provider's headers where it sends them).
   */
  keyQuota: KeyQuota;
  /** When the provider's day (and `rpd`) resets, `"HH:MM"` UTC. Default `"00:00"`. */
  dayResetsAt: string;
  /** How the provider names its rate-limit headers. Default "openai" for added services. */
  rateLimitHeaders: RateLimitDialect;
  /**
   * Gemini style only: whether the client's credential is also accepted as
   * `?key=` in the URL, as Google's own clients send it. Default false: URLs
   * are recorded by proxies, access logs and Deno's OpenTelemetry spans,
   * so a credential in one leaks; clients send `x-goog-api-key` instead.
   */
  keyInQuery: boolean;
}

/** Gateway-wide settings, each with its default in {@linkcode DEFAULT_SETTINGS}. */
export interface GatewaySettings {
  /** Requests that may wait per service before new ones are refused with 429. */
  queueLimit: number;
  /** Longest a request may wait for a slot, a token or a rested key, in ms. */
  queueTimeoutMs: number;
  /** Upstream retries after the first attempt (each one takes a token). */
  maxRetries: number;
  /** Time from sending a request upstream to its response headers, in ms. */
  firstByteTimeoutMs: number;
  /** Longest silence inside a response body before the stream is ended, in ms. */
  idleTimeoutMs: number;
  /** Largest request body accepted, in bytes. */
  maxBodyBytes: number;
  /**
   * Bytes of request bodies one instance holds at once (read, or waiting in
   * a queue), in all; past it a request gets 429 `gateway_busy`. Default
   * 192 MiB, sized for Deno Deploy's 768 MB isolate.
   */
  bodyBudgetBytes: number;
  /** How long a key rejected with 401/403/quota errors stays out of rotation, in ms. */
  keyDisableMs: number;
  /** "shared": limits hold for the deployment through KV. "local": per instance only. */
  limitMode: "shared" | "local";
  /** Lifetime τ of tokens leased from the shared bucket, in ms. */
  leaseMs: number;
  /** How long a vanished instance's in-flight slots stay counted, in ms. */
  slotTtlMs: number;
  /** Timeout of one KV call, in ms. */
  kvTimeoutMs: number;
  /**
   * On SIGTERM or SIGINT, how long responses in flight may run before the
   * streams still open are ended, in ms. Deno Deploy allows about 5 s.
   */
  drainMs: number;
  /**
   * The whole shutdown's budget, from the signal (SIGINT on Deno Deploy,
   * which sends SIGKILL 5 s later; or SIGTERM) to the exit: the drain, the
   * hand-backs and the last KV writes. The drain gets what is left once
   * time for the writes is kept by KV's recent latency. Default 4500.
   */
  shutdownMs: number;
  /**
   * After this long without a request (none in flight either), the
   * instance's background work sleeps: no heartbeat, watch, minute
   * flush or KV probe, so an idle instance makes no KV call. The next
   * request wakes it. In ms; default 60000.
   */
  idleAfterMs: number;
  /**
   * How many instances to assume while KV has never answered this instance
   * (down since start-up): in degraded mode each limit is divided by the
   * instances last seen, or by this when none was ever seen.
   */
  expectedInstances: number;
  /**
   * When the teams' budget day begins, `"HH:MM"` in UTC. Default `"00:00"`
   * (UTC midnight).
   */
  dayStartsAt: string;
  /**
   * Whether ACCESS_PASSWORD also opens the admin API and status page while
   * no ADMIN_PASSWORD is set. Default true (a one-password deployment);
   * false leaves the admin API closed to it. With ADMIN_PASSWORD set,
   * ACCESS_PASSWORD is never the admin's.
   */
  accessPasswordAdmin: boolean;
  /**
   * A header that carries the client's address, set by a proxy you trust in
   * front of kvgate (`x-forwarded-for`: its last entry; any other: its whole
   * value). Default none: the connection's own address. Used to slow
   * guessing and in the log of a refused credential.
   */
  clientAddressHeader: string | undefined;
}

/** Defaults for every gateway-wide setting. */
export const DEFAULT_SETTINGS: Readonly<GatewaySettings> = Object.freeze({
  queueLimit: 200,
  queueTimeoutMs: 60_000,
  maxRetries: 2,
  firstByteTimeoutMs: 60_000,
  idleTimeoutMs: 120_000,
  maxBodyBytes: 32 * 1024 * 1024,
  bodyBudgetBytes: 192 * 1024 * 1024,
  keyDisableMs: 3_600_000,
  limitMode: "shared",
  leaseMs: 2_000,
  slotTtlMs: 15_000,
  kvTimeoutMs: 2_000,
  drainMs: 4_000,
  shutdownMs: 4_500,
  idleAfterMs: 60_000,
  expectedInstances: 1,
  dayStartsAt: "00:00",
  accessPasswordAdmin: true,
  clientAddressHeader: undefined,
});

function service(
  name: string,
  target: string,
  rps: number,
  burst: number,
  maxConn: number,
  style: ServiceStyle,
  rateLimitHeaders: RateLimitDialect,
  dayResetsAt = "00:00",
): [string, ServiceConfig] {
  return [name, {
    target,
    envKey: `${name.toUpperCase()}_API_KEYS`,
    rps,
    burst,
    maxConn,
    style,
    streamRelay: "native",
    keyQuota: {},
    dayResetsAt,
    rateLimitHeaders,
    keyInQuery: false,
  }];
}

/** The built-in services, by route prefix. */
export const DEFAULT_SERVICES: Readonly<Record<string, Readonly<ServiceConfig>>> = Object.freeze(
  Object.fromEntries([
    // Dialects: what each provider sends (../shared/provider_limits.md). Gemini's
    // day resets at midnight Pacific: 08:00 UTC in winter (an hour late in summer).
    service("cerebras", "https://api.cerebras.ai", 4, 8, 6, "openai", "cerebras"),
    service("groq", "https://api.groq.com/openai", 1, 3, 2, "openai", "groq"),
    service("claude", "https://api.anthropic.com", 2, 2, 1, "anthropic", "anthropic"),
    service("nvidia", "https://integrate.api.nvidia.com", 3, 6, 5, "openai", "none"),
    service("deepseek", "https://api.deepseek.com", 10, 20, 10, "openai", "none"),
    service("openai", "https://api.openai.com", 10, 20, 10, "openai", "openai"),
    service("openrouter", "https://openrouter.ai/api", 5, 10, 8, "openai", "none"),
    service("siliconflow", "https://api.siliconflow.cn", 5, 10, 10, "openai", "none"),
    service(
      "gemini",
      "https://generativelanguage.googleapis.com",
      3,
      5,
      3,
      "gemini",
      "none",
      "08:00",
    ),
    service("xai", "https://api.x.ai", 2, 5, 3, "openai", "none"),
    service("ollama", "https://ollama.com", 10, 10, 5, "openai", "none"),
    service("pollinations", "https://gen.pollinations.ai", 5, 10, 5, "openai", "none"),
  ]),
);
