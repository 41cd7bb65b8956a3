/**
 * What a team token costs: CPU per request of kvgates whose clients send a
 * team token, against a kvgate without teams whose clients send the
 * password, all loaded at once by their own wrk, round after round, in the
 * same run. Two teams: one with a daily requests budget (every team stage
 * runs: the hash lookup, the budget, the fair gate, the token estimate),
 * and one with a daily tokens budget, whose JSON answers are also read to
 * count the tokens they report.
 *
 * `BENCH_PHASE_S` (default 5) and `BENCH_PAIRED_ROUNDS` (default 6) set its length.
 *
 * @module
 */
import { BENCH_PASSWORD, CHAT_LUA, kvgateEnv } from "./bench_kit.ts";
import { ensureWrk, PIN, type Proc, start, stop } from "./load_kit.ts";
import { median, pairedRound } from "./paired.ts";

const PHASE_S = Number(Deno.env.get("BENCH_PHASE_S") ?? 5);
const ROUNDS = Number(Deno.env.get("BENCH_PAIRED_ROUNDS") ?? 6);
const TEAM_TOKEN = "bench-team-token-0123456789abcdef";

const f = (n: number, d = 1) => n.toFixed(d);

/** The targets under their own wrk at once for PHASE_S: CPU µs per request of each. */
const paired = (targets: Proc[], scripts: string[], conns: number) =>
  pairedRound(targets, { conns, seconds: PHASE_S, script: scripts });

async function main() {
  await ensureWrk();
  const dir = await Deno.makeTempDir();
  const passwordLua = await Deno.makeTempFile({ suffix: ".lua" });
  await Deno.writeTextFile(passwordLua, CHAT_LUA);
  const teamLua = await Deno.makeTempFile({ suffix: ".lua" });
  await Deno.writeTextFile(teamLua, CHAT_LUA.replace(BENCH_PASSWORD, TEAM_TOKEN));
  const mock = await start("direct", "bench/mock_upstream.ts", { LATENCY_MS: "2" }, "", 0);
  const open = { rps: 1e6, burst: 1e6, maxConn: 10_000 };
  const password = await start(
    "kvgate-password",
    "main.ts",
    kvgateEnv(mock.base, `${dir}/password.sqlite3`, open),
    "/openai/v1/chat/completions",
  );
  const withTeam = (name: string, daily: Record<string, number>) => {
    const env = kvgateEnv(mock.base, `${dir}/${name}.sqlite3`, open);
    const config = JSON.parse(env.GATEWAY_CONFIG);
    config.teams = {
      bench: { token: TEAM_TOKEN, weight: 2, daily },
      other: { token: "bench-other-token-0123456789abcdef" },
    };
    env.GATEWAY_CONFIG = JSON.stringify(config);
    return start(name, "main.ts", env, "/openai/v1/chat/completions");
  };
  const team = await withTeam("kvgate-team", { requests: 1e9 });
  const tokens = await withTeam("kvgate-team-tokens", { requests: 1e9, tokens: 1e12 });
  const targets = [password, team, tokens];
  const scripts = [passwordLua, teamLua, teamLua];
  console.log(
    `# team token vs password — ${
      new Date().toISOString().slice(0, 10)
    }, Deno ${Deno.version.deno}, ` +
      `${ROUNDS} rounds of ${PHASE_S} s, both kvgates loaded at once ${
        PIN ? "on core 1 (mock and wrk on core 0)" : "(not pinned)"
      }`,
  );
  try {
    for (const conns of [1, 32]) {
      await paired(targets, scripts, conns); // warm-up at this load
      const ratios: number[][] = [[], []];
      console.log(
        `\n${conns} conn | password µs/req | team µs/req | team (tokens budget) µs/req | ` +
          "team ÷ password | team (tokens budget) ÷ password",
      );
      for (let round = 1; round <= ROUNDS; round++) {
        const [p, t, k] = await paired(targets, scripts, conns);
        ratios[0].push(t / p);
        ratios[1].push(k / p);
        console.log(
          `round ${round} | ${f(p)} | ${f(t)} | ${f(k)} | ${f(t / p, 2)} | ${f(k / p, 2)}`,
        );
      }
      for (const [i, what] of ["team", "team (tokens budget)"].entries()) {
        console.log(
          `${conns} conn: ${what} ÷ password CPU per request, median ${f(median(ratios[i]), 2)} ` +
            `(min ${f(Math.min(...ratios[i]), 2)}, max ${f(Math.max(...ratios[i]), 2)})`,
        );
      }
    }
  } finally {
    for (const p of [tokens, team, password, mock]) await stop(p);
    await Deno.remove(dir, { recursive: true });
  }
}

await main();
