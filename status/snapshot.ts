/**
 * What the status page and `/status` show of the deployment: the shape of
 * a snapshot ({@linkcode StatusBoard} builds it).
 *
 * @module
 */
import type { MinuteCount } from "./minute_counts.ts";

/** A model group as the status shows it: each target, and whether it would be chosen now. */
export interface GroupStatus {
  name: string;
  switchAfterMs: number;
  /** In order; `state` is `ready`, or why a request would pass it over now. */
  targets: Array<{ target: string; state: string; until?: string }>;
}

/** One key as the status shows it: its id (never the key), its state and why. */
export interface KeyStatus {
  id: string;
  state: "active" | "cooling" | "disabled" | "paced";
  until?: string;
  reason?: string;
  /** Requests per minute and tokens per minute it is paced at (quota or the provider's word). */
  paced?: { rpm?: number; tpm?: number };
  /** The provider's latest word on it (limits, remaining counts, resets). */
  provider?: unknown;
  /** The status of its latest upstream answer seen by this instance. */
  lastStatus?: number;
  /** Upstream answers to it seen by this instance, since start. */
  answers: number;
  /** When its rest was decided (cooling or disabled). */
  since?: string;
  /**
   * Its use on the provider's day so far, all instances (from KV, up to 5 s
   * behind): upstream attempts, and the tokens of the answers kvgate read;
   * with the quota's `rpd` and `tpm` when set. With `rpd`, `requests` is
   * the quota's own count.
   */
  today?: { day: string; requests: number; tokens: number; rpd?: number; tpm?: number };
}

/** The deployment as one instance sees it, read from KV and its own state. */
export interface StatusSnapshot {
  at: string;
  instance: string;
  kvDegraded: boolean;
  /** Where KV lives, when it needs saying: no database attached to the app. */
  kvWarning?: string;
  services: Record<string, {
    limits: { rps: number; burst: number; maxConn: number };
    /** The shared bucket's level now (tokens free), from the KV ledger. */
    bucketTokens: number | null;
    /** In-flight slots held by all instances, from KV. */
    inFlight: number | null;
    /** Requests waiting here for a slot or a token. */
    queuedHere: number;
    /** The same by team (`""`: the password's). */
    queuedByTeam: Record<string, number>;
    /** What the provider grants each key, as configured (`keyQuota`). */
    keyQuota: Record<string, number>;
    /** A pause in force: the provider's back-off, or an admin's (`until` says so). */
    backoff: { until: string; reason: string; strikes: number } | null;
    keys: KeyStatus[];
    /** Answers to clients, 429s among them, 5xx, and upstream 429s: all instances, 5 minutes. */
    lastFiveMinutes: Omit<MinuteCount, "minute"> | null;
    /** The same per minute, the last 15 minutes, oldest first (minutes with none left out). */
    perMinute: Array<MinuteCount & { at: string }>;
  }>;
  teams: unknown[];
  /** The model groups, with each target's state. */
  groups: GroupStatus[];
  instances: unknown[];
}
