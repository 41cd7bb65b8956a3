import { clientCredential, timingSafeEqual } from "./auth.ts";
import { gatewayErrors } from "../error_catalogue.ts";
import type { GatewayError } from "../errors.ts";
import type { Exchange } from "../exchange.ts";
import type { StageDeps } from "../stage_deps.ts";
import { ADMIN, teamPass } from "./team_stages.ts";
import { tokenSha256 } from "../../teams/mod.ts";
import { clientAddress } from "./login_guard.ts";

/**
 * The authenticate stage: the client's credential (Bearer, x-api-key, and
 * on gemini x-goog-api-key or ?key=) is ACCESS_PASSWORD (compared in
 * constant time; the team `admin`) or a team's token (found by its
 * SHA-256: only hashes are kept, and a lookup by hash tells nothing of the
 * token). Answers why not, or nothing to pass the request on.
 *
 * Guessing is slowed: an address that presented too many wrong credentials
 * is shut out for a while (429, whatever it presents), and every refusal's
 * log line names the address (see login_guard.ts).
 *
 * A decision that rests on the teams made through the admin API waits for
 * them to be read when this instance's view of them is too old (see
 * `TeamRegistry.fresh`): the promise to wait for, then ask again with
 * `viewChecked`. So a token deleted or rotated elsewhere is refused here
 * too, also by an instance that slept through the change.
 */
export function authenticate(
  p: StageDeps,
  x: Exchange,
  viewChecked: boolean,
): GatewayError | Promise<void> | undefined {
  const password = p.config.password;
  const registry = p.teams?.registry;
  // With no password, whether anyone may come in at all rests on the teams.
  const reading = password === undefined ? teamsRead(p, x, viewChecked) : undefined;
  if (reading) return reading;
  const teams = registry !== undefined && registry.any;
  if (password === undefined && !teams) return gatewayErrors.notConfigured();
  if (p.logins.watching) {
    const wait = p.logins.shutOutFor(addressOf(p, x), x.now);
    if (wait > 0) return gatewayErrors.tooManyFailedLogins(wait);
  }
  const cred = clientCredential(x.head, x.target.search, x.style, x.rt.service.keyInQuery);
  if (cred === undefined) {
    // No credential is a stranger's request (the disguise answers it, with no log line), unless
    // it sent one in a ?key= this service does not take: that 401 is logged with the address.
    if (x.style === "gemini" && /[?&]key=/.test(x.target.search)) {
      addressOf(p, x);
      return gatewayErrors.keyInQueryRefused();
    }
    return gatewayErrors.badCredential(true);
  }
  if (password !== undefined && timingSafeEqual(cred, password)) {
    if (teams) x.team = teamPass(ADMIN, x.head.bulk);
    return undefined;
  }
  // Not the password: a team's token, or a guess, as the teams are now.
  const read = teamsRead(p, x, viewChecked);
  if (read) return read;
  const team = teams ? registry.byHash(tokenSha256(cred)) : undefined;
  if (team === undefined) {
    const wait = p.logins.refused(addressOf(p, x), cred, x.now);
    return wait > 0 ? gatewayErrors.tooManyFailedLogins(wait) : gatewayErrors.badCredential(false);
  }
  x.team = teamPass(team, x.head.bulk);
  return undefined;
}

/** The read of the teams to wait for when this instance's view is too old (none once waited for). */
function teamsRead(p: StageDeps, x: Exchange, viewChecked: boolean): Promise<void> | undefined {
  return viewChecked ? undefined : p.teams?.registry.fresh(x.now);
}

/** The client's address, kept on the request for its log line. */
function addressOf(p: StageDeps, x: Exchange): string {
  return x.client ??= clientAddress(x.req, x.info, p.config.clientAddressHeader);
}
