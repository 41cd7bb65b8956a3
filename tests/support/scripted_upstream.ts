/**
 * An in-process provider whose answers are scripted per key, for tests on
 * the fake clock: each call takes the next scripted answer of its key
 * (else of `"*"`), else a success; every call is recorded with the time.
 *
 * @module
 */
import type { FakeClock } from "./fake_clock.ts";
import { jsonAnswer } from "./in_process.ts";
import { OK } from "./key_pacing_setup.ts";

/** A scripted answer, served instead of a success. */
export interface Scripted {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

/** A call the provider received. */
export interface Received {
  key: string | undefined;
  method: string;
  path: string;
  body: string;
  at: number;
}

/** The script, what was received, and the answer function `setup()` takes. */
export function scriptedUpstream(
  clock: FakeClock,
  fallback?: (key: string | undefined, req: Request) => Response | undefined,
) {
  const script = new Map<string, Scripted[]>();
  const received: Received[] = [];
  const answer = async (key: string | undefined, req: Request): Promise<Response> => {
    const body = req.body ? await req.text() : "";
    received.push({
      key,
      method: req.method,
      path: new URL(req.url).pathname,
      body,
      at: clock.now(),
    });
    const next = (key !== undefined ? script.get(key)?.shift() : undefined) ??
      script.get("*")?.shift();
    if (next) {
      return new Response(next.body ?? '{"error":{"message":"scripted"}}', {
        status: next.status,
        headers: { "content-type": "application/json", ...next.headers },
      });
    }
    return fallback?.(key, req) ?? jsonAnswer(200, OK);
  };
  return { script, received, answer };
}
