/**
 * Paired measurement: several servers loaded at the same time, each by its
 * own wrk, round after round, their CPU per request read from /proc. Measured
 * in turn, a target's CPU per request moves by 10–30% from one phase to the
 * next with the machine's state (the minimal proxy's own figure among
 * them), which hides a 15% difference; measured together, every target
 * meets the same state, and the ratio between them is steady.
 *
 * @module
 */
import { cpuUs, type Proc, wrk } from "./load_kit.ts";

/** One paired load: how many connections each target gets, for how long, with which script(s). */
export interface PairedLoad {
  conns: number;
  seconds: number;
  /** One wrk (Lua) script for every target, or one per target. */
  script: string | string[];
}

/** CPU µs per request of each target, all loaded at once for one round. */
export async function pairedRound(targets: Proc[], load: PairedLoad): Promise<number[]> {
  const scriptOf = (i: number) => typeof load.script === "string" ? load.script : load.script[i];
  const before = targets.map((t) => cpuUs(t.child.pid));
  const results = await Promise.all(
    targets.map((t, i) => wrk(t.base + t.path, load.conns, load.seconds, scriptOf(i))),
  );
  return targets.map((t, i) => (cpuUs(t.child.pid) - before[i]) / Math.max(1, results[i].requests));
}

/** `rounds` paired rounds: per round, each target's CPU µs per request. */
export async function pairedRounds(
  targets: Proc[],
  load: PairedLoad,
  rounds: number,
): Promise<number[][]> {
  const perRound: number[][] = [];
  for (let round = 0; round < rounds; round++) perRound.push(await pairedRound(targets, load));
  return perRound;
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const f = (n: number, d: number) => Number.isFinite(n) ? n.toFixed(d) : "-";

/**
 * The rounds as a table — each target's µs per request, then each ratio
 * asked for — and per ratio its median, lowest and highest over the rounds.
 * `ratios` are pairs of target indexes: `[i, j]` is target i ÷ target j.
 */
export function pairedTable(
  title: string,
  targets: Proc[],
  perRound: number[][],
  ratios: [number, number][],
): string[] {
  const name = ([i, j]: [number, number]) => `${targets[i].name} ÷ ${targets[j].name}`;
  const out = [
    title,
    `round | ${targets.map((t) => `${t.name} µs/req`).join(" | ")} | ${
      ratios.map(name).join(" | ")
    }`,
  ];
  perRound.forEach((us, round) => {
    out.push(
      [round + 1, ...us.map((u) => f(u, 1)), ...ratios.map(([i, j]) => f(us[i] / us[j], 2))]
        .join(" | "),
    );
  });
  for (const pair of ratios) {
    const rs = perRound.map((us) => us[pair[0]] / us[pair[1]]).sort((a, b) => a - b);
    out.push(
      `${name(pair)}: median ${f(median(rs), 2)}, lowest ${f(rs[0], 2)}, highest ${
        f(rs[rs.length - 1], 2)
      }`,
    );
  }
  return out;
}
