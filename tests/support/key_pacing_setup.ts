/**
 * One in-process gateway for the key-pacing tests, on the fake clock: an
 * `openai` service over an injected upstream, its keys, the log lines.
 *
 * @module
 */
import type { Gateway } from "../../gateway/mod.ts";
import { FakeClock } from "./fake_clock.ts";
import { fakeUpstream, inProcessGateway } from "./in_process.ts";

export const OK = {
  id: "c",
  choices: [{ message: { role: "assistant", content: "hi" } }],
  usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
};

export interface Setup {
  clock: FakeClock;
  gateway: Gateway;
  calls: ReturnType<typeof fakeUpstream>["calls"];
  logs: Record<string, unknown>[];
  kv: Deno.Kv;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function setup(
  answer: (key: string | undefined, req: Request) => Response | Promise<Response>,
  service: Record<string, unknown>,
  keys: string,
  settings: Record<string, unknown> = {},
  shared?: { kv: Deno.Kv; clock: FakeClock },
): Promise<Setup> {
  const clock = shared?.clock ?? new FakeClock();
  const kv = shared?.kv ?? await Deno.openKv(":memory:");
  const upstream = fakeUpstream(answer as (k: string | undefined, r: Request) => Response);
  const logs: Record<string, unknown>[] = [];
  const gateway = await inProcessGateway(
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
    { kv, clock, fetch: upstream.fetch, logs, random: () => 0.5 },
  );
  return {
    clock,
    gateway,
    calls: upstream.calls,
    logs,
    kv,
    async [Symbol.asyncDispose]() {
      await gateway.close();
      if (!shared) kv.close();
    },
  };
}
