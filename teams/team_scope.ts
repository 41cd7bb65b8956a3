/**
 * What a team may reach, asked on each request: an endpoint (`paths`) and
 * a model (`models`), each a list of patterns where `*` stands for any run
 * of characters. Pure.
 *
 * @module
 */

/**
 * True when `method path` (the path under the service's prefix) is one of
 * `patterns` (see {@linkcode TeamSettings.paths}).
 */
export function endpointAllowed(
  patterns: readonly string[],
  method: string,
  path: string,
): boolean {
  for (const p of patterns) {
    if (p === "*") return true;
    const space = p.indexOf(" ");
    const want = space < 0 ? undefined : p.slice(0, space);
    const pathPattern = space < 0 ? p : p.slice(space + 1);
    const methodOk = want === undefined
      ? method === "GET" || method === "POST"
      : want === "*" || want === method;
    if (methodOk && globMatch(pathPattern, path)) return true;
  }
  return false;
}

/** True when `model` matches one of `patterns` (`*` = any run of characters). */
export function modelAllowed(patterns: readonly string[] | undefined, model: string): boolean {
  if (patterns === undefined) return true;
  return patterns.some((p) => globMatch(p, model));
}

function globMatch(pattern: string, s: string): boolean {
  if (!pattern.includes("*")) return pattern === s;
  const parts = pattern.split("*");
  if (!s.startsWith(parts[0])) return false;
  let at = parts[0].length;
  for (let i = 1; i < parts.length - 1; i++) {
    const found = s.indexOf(parts[i], at);
    if (found === -1) return false;
    at = found + parts[i].length;
  }
  const last = parts[parts.length - 1];
  return s.length - at >= last.length && s.endsWith(last);
}
