/**
 * The admin's actions on keys and services. Each is written to KV, so it
 * holds on every instance within a second (their next refresh), and on
 * this one at once:
 *
 * - `POST /_kvgate/keys/<service>/<keyId>/enable`: ends the key's rest,
 *   a cool-down or a disable (401, 403, quota, daily cap) alike;
 * - `POST /_kvgate/services/<service>/pause`: no request goes to the
 *   provider; each gets 503 `service_paused` at once;
 * - `POST /_kvgate/services/<service>/resume`: ends any pause, the
 *   provider-wide back-off included.
 *
 * @module
 */
import { decodeSegment, json, problem } from "./admin_reply.ts";
import type { StageDeps } from "../stage_deps.ts";

const KEY_ACTION = /^\/_kvgate\/keys\/([^/]+)\/([^/]+)\/enable\/?$/;
const SERVICE_ACTION = /^\/_kvgate\/services\/([^/]+)\/(pause|resume)\/?$/;

/** Answers an action's path, or undefined when the path is none of them. */
export async function adminAction(
  p: StageDeps,
  req: Request,
  path: string,
): Promise<Response | undefined> {
  const key = KEY_ACTION.exec(path);
  const service = SERVICE_ACTION.exec(path);
  if (!key && !service) return undefined;
  if (req.method !== "POST") return problem(405, "method_not_allowed", `Use POST on ${path}.`);
  const name = decodeSegment((key ?? service)![1]);
  const id = key ? decodeSegment(key[2]) : "";
  if (name === undefined || id === undefined) {
    return problem(400, "invalid_path", "The path holds a malformed escape.");
  }
  const rt = p.runtimes.get(name);
  if (!rt) return problem(404, "unknown_service", `No service named ${name}.`);
  try {
    if (key) {
      if (!(await rt.pool.enable(id, p.clock.now()))) {
        return problem(404, "unknown_key", `${name} has no key with id ${id}.`);
      }
      p.log({ event: "key_enabled", service: name, key: id });
      return json(200, { service: name, key: id, state: "active" });
    }
    const backoff = rt.backoff;
    if (!backoff) return problem(404, "unknown_service", `${name} cannot be paused.`);
    if (service![2] === "pause") await backoff.adminPause();
    else await backoff.adminResume();
    return json(200, { service: name, paused: service![2] === "pause" });
  } catch (e) {
    p.log({ event: "admin_error", error: String(e) });
    return problem(
      503,
      "admin_unavailable",
      "KV did not answer; the action was not shared. Retry.",
    );
  }
}
