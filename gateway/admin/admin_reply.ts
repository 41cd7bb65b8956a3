/** The admin API's answers: JSON, never cached, errors in OpenAI's shape. */

/** A JSON answer (or an empty one), never cached. */
export function json(status: number, body: unknown): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: body === undefined
      ? { "cache-control": "no-store", "x-content-type-options": "nosniff" }
      : {
        "content-type": "application/json",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      },
  });
}

/** An error in OpenAI's shape, `field` naming the field at fault. */
export function problem(status: number, code: string, message: string, field?: string): Response {
  const type = status === 404 ? "not_found_error" : "invalid_request_error";
  return json(status, { error: { message, type, code, ...(field ? { field } : {}) } });
}

/** A path segment decoded, or undefined when its escapes are malformed (a 400, not a throw). */
export function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
