/**
 * What a provider grants each key, and the pacing kvgate derives from it.
 * Pure functions.
 *
 * @module
 */
import type { ServiceLimits } from "../limiter/mod.ts";

/** What the provider grants one key; any subset. */
export interface KeyQuota {
  /** Requests per minute. */
  rpm?: number;
  /** Requests per provider day (see `dayResetsAt`). */
  rpd?: number;
  /** Tokens (input + output) per minute. */
  tpm?: number;
}

/** The quota fields, for validation and messages. */
export const KEY_QUOTA_FIELDS = ["rpm", "rpd", "tpm"] as const;

/**
 * Validates a `keyQuota` object: each field a positive integer; throws a
 * RangeError naming the field otherwise.
 */
export function parseKeyQuota(raw: unknown): KeyQuota {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new RangeError(
      `keyQuota must be an object like {"rpm": 30} (got ${JSON.stringify(raw)})`,
    );
  }
  const out: KeyQuota = {};
  for (const [field, v] of Object.entries(raw)) {
    if (!(KEY_QUOTA_FIELDS as readonly string[]).includes(field)) {
      throw new RangeError(
        `keyQuota.${field} is not a known field (known: ${KEY_QUOTA_FIELDS.join(", ")})`,
      );
    }
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new RangeError(
        `keyQuota.${field} must be a positive integer (got ${JSON.stringify(v)})`,
      );
    }
    out[field as keyof KeyQuota] = v;
  }
  return out;
}

/**
 * The shared pacing of a per-minute limit of `perMinute`: its rate, and a
 * burst below the provider's so that what all instances send in any
 * window W, at most `burst + rate·(W + τ)` (the ledger's bound, τ the lease
 * lifetime), stays within the provider's `perMinute + rate·W` with a second
 * to spare for arrival jitter and clock skew. The long-run rate is the
 * provider's in full; only the first burst is a little smaller.
 */
export function perMinuteLimits(perMinute: number, leaseMs: number): ServiceLimits {
  const rps = perMinute / 60;
  const margin = Math.ceil((rps * (leaseMs + 1000)) / 1000);
  return { rps, burst: Math.max(1, perMinute - margin), maxConn: Number.MAX_SAFE_INTEGER };
}

/** Bytes estimated at 4 a token; past them, at 16 (see {@linkcode estimateInputTokens}). */
const FULL_ESTIMATE_BYTES = 64 * 1024;

/**
 * Tokens a request will cost before its answer says, at least 1: one per 4
 * bytes of the first 64 KiB of body (JSON punctuation and field names make
 * this an overestimate for English text, never far under for other
 * scripts), then one per 16 bytes. A huge body is estimated low on
 * purpose: the estimate is reserved on a key shared by everyone, and the
 * answer's `usage` charges what it missed once it is known.
 */
export function estimateInputTokens(bodyBytes: number): number {
  const full = Math.min(bodyBytes, FULL_ESTIMATE_BYTES);
  return Math.max(1, Math.ceil(full / 4 + (bodyBytes - full) / 16));
}

const DAY_MS = 86_400_000;

/** The next provider day reset after `now`, for days starting `offsetMs` after UTC midnight. */
export function nextDayReset(now: number, offsetMs: number): number {
  return Math.floor((now - offsetMs) / DAY_MS) * DAY_MS + offsetMs + DAY_MS;
}
