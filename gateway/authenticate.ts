import { clientCredential, timingSafeEqual } from "./auth.ts";
import { gatewayErrors } from "./error_catalogue.ts";
import type { GatewayError } from "./errors.ts";
import type { Exchange } from "./exchange.ts";
import type { Pipeline } from "./pipeline.ts";

/**
 * The authenticate stage: the client's credential (Bearer, x-api-key, and
 * on gemini x-goog-api-key or ?key=) must equal ACCESS_PASSWORD, compared
 * in constant time. Answers why not, or nothing to pass the request on.
 */
export function authenticate(p: Pipeline, x: Exchange): GatewayError | undefined {
  const password = p.config.password;
  if (password === undefined) return gatewayErrors.notConfigured();
  const cred = clientCredential(x.head, x.target.search, x.style);
  if (cred === undefined || !timingSafeEqual(cred, password)) {
    return gatewayErrors.badCredential(cred === undefined);
  }
  return undefined;
}
