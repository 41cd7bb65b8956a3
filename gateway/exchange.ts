import type { GatewayConfig, ServiceStyle } from "../config/mod.ts";
import type { PooledKey } from "../keys/mod.ts";
import { corsHeaders } from "./cors.ts";
import { type ClientHead, readClientHead } from "./headers.ts";
import { requestId } from "../lib/request_id.ts";
import type { RequestTarget } from "./stages/route.ts";
import type { ServiceRuntime } from "./runtime.ts";
import type { TeamPass } from "./stages/team_pass.ts";
import type { GroupWalk } from "./stages/group_walk.ts";
import type { TokenUsage } from "../providers/mod.ts";

/** The request as it walks the stages: its record, one per request. */
export interface Exchange {
  req: Request;
  target: RequestTarget;
  /** The client's headers, read once. */
  head: ClientHead;
  /** The CORS headers of every answer (see {@linkcode corsHeaders}). */
  cors: ReturnType<typeof corsHeaders>;
  id: string;
  started: number;
  rt: ServiceRuntime;
  style: ServiceStyle;
  deadline: number;
  attempts: number;
  key: PooledKey | undefined;
  queueMs: number;
  upstreamMs: number | undefined;
  /** What the server tells of the connection (absent in process): when the answer is over. */
  info: Deno.ServeHandlerInfo | undefined;
  /** The latest upstream answer (kept with the record: see `v8_shapes.ts`). */
  upstream: Response | undefined;
  /**
   * The clock's latest reading for this request, taken at the stages that
   * need one (admission, the upstream's answer): the stages in between
   * reuse it rather than read the clock a dozen times a request.
   */
  now: number;
  /** The team the credential belongs to (set by authenticate when teams exist). */
  team: TeamPass | undefined;
  /** Model tokens reserved on the key before sending (its `tpm`); 0 when the key counts none. */
  keyCost: number;
  /** Model tokens the answer reported (`usage`), when it was read for them. */
  usedTokens: number | undefined;
  /** The same split into input and output, when the answer said them apart. */
  usedSplit: TokenUsage | undefined;
  /** How a streamed answer was relayed (the log's `relay`); unset for any other answer. */
  relay: "native" | "observe" | undefined;
  /** The request's `model`, read only when OpenTelemetry is on. */
  model: string | undefined;
  /** This attempt is the single probe after a provider-wide pause. */
  probe: boolean;
  /** The client's address, read only when a credential is refused (for the log and the login guard). */
  client: string | undefined;
  /** A request to a model group: its walk over the targets (`x.rt` is the current one's). */
  group: GroupWalk | undefined;
  /**
   * Hands back the service's in-flight slot the request holds (set by the
   * admit stage). The request's end (`account`) or a model group's switch
   * to its next target calls {@linkcode handSlotBack}: never a stage.
   */
  slot: (() => void) | undefined;
}

/**
 * The one constructor of the request record. Every field is present from
 * the start, so every request's record has one shape whichever stage it
 * ends at (one shape keeps the stages that read it optimized).
 */
export function newExchange(
  req: Request,
  target: RequestTarget,
  rt: ServiceRuntime,
  started: number,
  config: Pick<GatewayConfig, "queueTimeoutMs">,
  info: Deno.ServeHandlerInfo | undefined,
): Exchange {
  const head = readClientHead(req.headers);
  return {
    req,
    target,
    head,
    cors: corsHeaders(head.origin, req.method),
    id: requestId(started),
    started,
    rt,
    style: rt.service.style,
    deadline: started + config.queueTimeoutMs,
    attempts: 0,
    key: undefined,
    queueMs: 0,
    upstreamMs: undefined,
    info,
    upstream: undefined,
    now: started,
    team: undefined,
    keyCost: 0,
    usedTokens: undefined,
    usedSplit: undefined,
    relay: undefined,
    model: undefined,
    probe: false,
    client: undefined,
    group: undefined,
    slot: undefined,
  };
}

/** Hands the request's in-flight slot back, once (a no-op when it holds none). */
export function handSlotBack(x: Exchange): void {
  const release = x.slot;
  if (release === undefined) return;
  x.slot = undefined;
  release();
}
