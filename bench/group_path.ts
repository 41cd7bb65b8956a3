/**
 * What a model group costs: CPU per request of kvgates whose clients call
 * a group, against a kvgate whose clients call the service directly, all
 * loaded at once by their own wrk, round after round (bench/paired.ts).
 * Two groups: one with a single target (a model alias), and one whose first
 * target has no key left (skipped in memory, nothing sent) before the same
 * service. Both ask their target for another model than the client named,
 * so the body is rewritten: the dearer case.
 *
 * Run: `deno task bench:groups`. `BENCH_PHASE_S` (default 5) and
 * `BENCH_PAIRED_ROUNDS` (default 6) set its length; `BENCH_PAIRED_CONNS` (default 1) the load.
 *
 * @module
 */
import { CHAT_LUA, kvgateEnv } from "./bench_kit.ts";
import { ensureWrk, PIN, start, stop } from "./load_kit.ts";
import { pairedRound, pairedRounds, pairedTable } from "./paired.ts";

const PHASE_S = Number(Deno.env.get("BENCH_PHASE_S") ?? 5);
const ROUNDS = Number(Deno.env.get("BENCH_PAIRED_ROUNDS") ?? 6);
const CONNS = Number(Deno.env.get("BENCH_PAIRED_CONNS") ?? 1);

async function main() {
  await ensureWrk();
  const dir = await Deno.makeTempDir();
  const lua = await Deno.makeTempFile({ suffix: ".lua" });
  await Deno.writeTextFile(lua, CHAT_LUA);
  const mock = await start("direct", "bench/mock_upstream.ts", { LATENCY_MS: "2" }, "", 0);
  const open = { rps: 1e6, burst: 1e6, maxConn: 10_000 };
  const withGroups = (name: string) => {
    const env = kvgateEnv(mock.base, `${dir}/${name}.sqlite3`, open);
    const config = JSON.parse(env.GATEWAY_CONFIG);
    // A second service with no key: a group's first target that is always out.
    config.services.spent = { target: mock.base, envKey: "SPENT_API_KEYS", ...open };
    config.groups = {
      alias: { targets: [{ service: "openai", model: "bench-model-2" }] },
      fallback: {
        targets: [
          { service: "spent", model: "bench-model-2" },
          { service: "openai", model: "bench-model-2" },
        ],
      },
    };
    env.GATEWAY_CONFIG = JSON.stringify(config);
    return env;
  };
  const service = await start(
    "kvgate-service",
    "main.ts",
    kvgateEnv(mock.base, `${dir}/service.sqlite3`, open),
    "/openai/v1/chat/completions",
  );
  const alias = await start(
    "kvgate-group",
    "main.ts",
    withGroups("alias"),
    "/alias/v1/chat/completions",
  );
  const fallback = await start(
    "kvgate-group-skip",
    "main.ts",
    withGroups("fallback"),
    "/fallback/v1/chat/completions",
  );
  const targets = [service, alias, fallback];
  try {
    const load = { conns: CONNS, seconds: PHASE_S, script: lua };
    await pairedRound(targets, { ...load, conns: 32 });
    await pairedRound(targets, load);
    const title =
      `# model group vs service — ${
        new Date().toISOString().slice(0, 10)
      }, Deno ${Deno.version.deno}, ` +
      `${ROUNDS} rounds of ${PHASE_S} s at ${CONNS} connection(s), loaded at once ${
        PIN ? "on core 1 (mock and wrk on core 0)" : "(not pinned)"
      }`;
    const perRound = await pairedRounds(targets, load, ROUNDS);
    for (const line of pairedTable(title, targets, perRound, [[1, 0], [2, 0]])) console.log(line);
  } finally {
    for (const p of [fallback, alias, service, mock]) await stop(p);
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(lua);
  }
}

await main();
