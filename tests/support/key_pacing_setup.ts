/**
 * One in-process gateway for the key-pacing tests, on the fake clock: an
 * `openai` service over an injected upstream, its keys, the log lines.
 *
 * @module
 */
import type { FakeClock } from "./fake_clock.ts";
import { type Answer, gatewayOver, type InProcess } from "./in_process.ts";

export const OK = {
  id: "c",
  choices: [{ message: { role: "assistant", content: "hi" } }],
  usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
};

export type Setup = InProcess;

export function setup(
  answer: Answer,
  service: Record<string, unknown>,
  keys: string,
  settings: Record<string, unknown> = {},
  shared?: { kv?: Deno.Kv; clock?: FakeClock },
): Promise<Setup> {
  return gatewayOver(
    answer,
    {
      ...settings,
      services: {
        openai: {
          target: "http://upstream.test",
          rps: 100,
          burst: 100,
          maxConn: 50,
          rateLimitHeaders: "none",
          ...service,
        },
      },
    },
    { OPENAI_API_KEYS: keys },
    shared,
  );
}
