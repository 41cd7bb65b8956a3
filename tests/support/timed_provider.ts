/**
 * A provider on the fake clock, for in-process tests of timing: it answers
 * after `latencyMs`; a model list for `/models`, a completion for a chat
 * path (`{}` elsewhere), or, asked for a stream, `chunks` events `chunkMs`
 * apart (the first at once) and `[DONE]`. It records when each call
 * arrived and how many were in flight at most (a stream until its end).
 *
 * @module
 */
import type { FakeClock } from "./fake_clock.ts";
import { jsonAnswer } from "./in_process.ts";
import { OK } from "./key_pacing_setup.ts";

/** How the provider answers. */
export interface Timing {
  latencyMs?: number;
  chunks?: number;
  chunkMs?: number;
}

/** The provider's answer function, and what it saw (see the module doc). */
export function timedProvider(clock: FakeClock, o: Timing = {}) {
  const sent: number[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const later = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
  const encode = (s: string) => new TextEncoder().encode(s);
  const answer = async (_key: string | undefined, req: Request): Promise<Response> => {
    sent.push(clock.now());
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    const body = req.method === "POST" ? await req.text() : "";
    await later(o.latencyMs ?? 0);
    const path = new URL(req.url).pathname;
    if (!body.includes('"stream":true')) {
      inFlight--;
      if (path.endsWith("/models")) return jsonAnswer(200, { object: "list", data: [] });
      return jsonAnswer(200, path.includes("chat") ? OK : {});
    }
    let n = 0;
    const events = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (n > 0) await later(o.chunkMs ?? 0);
        if (n < (o.chunks ?? 3)) return c.enqueue(encode(`data: {"part":"part${n++}"}\n\n`));
        c.enqueue(encode("data: [DONE]\n\n"));
        c.close();
        inFlight--;
      },
    });
    return new Response(events, { headers: { "content-type": "text/event-stream" } });
  };
  return { answer, sent, maxInFlight: () => maxInFlight };
}
