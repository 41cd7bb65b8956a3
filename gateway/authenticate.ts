import { clientCredential, timingSafeEqual } from "./auth.ts";
import { gatewayErrors } from "./error_catalogue.ts";
import type { GatewayError } from "./errors.ts";
import type { Exchange } from "./exchange.ts";
import type { Pipeline } from "./pipeline.ts";
import { ADMIN, teamPass } from "./team_stages.ts";
import { tokenSha256 } from "../teams/mod.ts";

/**
 * The authenticate stage: the client's credential (Bearer, x-api-key, and
 * on gemini x-goog-api-key or ?key=) is ACCESS_PASSWORD (compared in
 * constant time; the team `admin`) or a team's token (found by its
 * SHA-256: only hashes are kept, and a lookup by hash tells nothing of the
 * token). Answers why not, or nothing to pass the request on.
 */
export function authenticate(p: Pipeline, x: Exchange): GatewayError | undefined {
  const password = p.config.password;
  const registry = p.teams?.registry;
  const teams = registry !== undefined && registry.any;
  if (password === undefined && !teams) return gatewayErrors.notConfigured();
  const cred = clientCredential(x.head, x.target.search, x.style);
  if (cred === undefined) return gatewayErrors.badCredential(true);
  if (password !== undefined && timingSafeEqual(cred, password)) {
    if (teams) x.team = teamPass(ADMIN, x.head.bulk);
    return undefined;
  }
  const team = teams ? registry.byHash(tokenSha256(cred)) : undefined;
  if (team === undefined) return gatewayErrors.badCredential(false);
  x.team = teamPass(team, x.head.bulk);
  return undefined;
}
