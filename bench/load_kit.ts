/**
 * The benchmarks' processes and load: starting a server pinned to a core,
 * its CPU time, and wrk runs. Shared by bench/run.ts and bench/team_path.ts.
 *
 * @module
 */
import { freePort } from "../tests/support/net.ts";
import { waitListening } from "./bench_kit.ts";

const DENO = Deno.execPath();
const ROOT = new URL("../", import.meta.url);
const LOG_DIR = Deno.env.get("BENCH_LOG_DIR");

/** A server process the benchmarks started. */
export interface Proc {
  name: string;
  base: string;
  path: string;
  child: Deno.ChildProcess;
}

/**
 * With two or more cores and taskset, the proxy under test gets core 1 to
 * itself and everything else (mock, wrk, this runner) shares core 0, so
 * that its CPU time per request does not swing with the load generator's.
 */
export const PIN = navigator.hardwareConcurrency >= 2 &&
  (await new Deno.Command("taskset", { args: ["-V"], stdout: "null", stderr: "null" }).output()
    .then((o) => o.success, () => false));

/** `program args` pinned to core `cpu` when pinning is possible. */
export function command(cpu: number, program: string, args: string[]): [string, string[]] {
  return PIN ? ["taskset", ["-c", String(cpu), program, ...args]] : [program, args];
}

/** Starts `script` with Deno on core `cpu` and resolves once it listens. */
export async function start(
  name: string,
  script: string,
  env: Record<string, string>,
  path: string,
  cpu = 1,
  cwd: string | URL = ROOT,
): Promise<Proc> {
  const port = freePort();
  const [program, args] = command(cpu, DENO, [
    "run",
    "-A",
    "--unstable-kv",
    "--unstable-no-legacy-abort",
    script,
  ]);
  const child = new Deno.Command(program, {
    args,
    cwd,
    env: { ...env, PORT: String(port), HOST: "127.0.0.1" },
    stdout: LOG_DIR ? "piped" : "null",
    stderr: "null",
  }).spawn();
  // BENCH_LOG_DIR keeps each process's stdout (kvgate's JSON log lines), for diagnosis.
  if (LOG_DIR) child.stdout.pipeTo((await Deno.create(`${LOG_DIR}/${name}.log`)).writable);
  const base = `http://127.0.0.1:${port}`;
  await waitListening(base, name);
  return { name, base, path, child };
}

/** Kills a started process and waits for it. */
export async function stop(p: Proc): Promise<void> {
  try {
    p.child.kill("SIGKILL");
  } catch { /* gone */ }
  await p.child.status;
}

/**
 * CPU time of a process's threads, in µs, from /proc/<pid>/task/<tid>/schedstat
 * (nanoseconds, where /proc/<pid>/stat counts in 10 ms ticks). A thread that
 * has exited is not counted; Deno's threads live as long as the process.
 */
export function cpuUs(pid: number): number {
  let ns = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[0]);
    } catch { /* the thread has just exited */ }
  }
  return ns / 1000;
}

/** wrk from Debian's packages: installed here when missing (needs root and the package registry). */
export async function ensureWrk(): Promise<void> {
  // An async function: Deno throws a missing command at spawn, before any promise is made.
  const has = async () => {
    try {
      await new Deno.Command("wrk", { args: ["-v"], stdout: "null", stderr: "null" }).output();
      return true;
    } catch {
      return false;
    }
  };
  if (await has()) return;
  console.error("bench: wrk is missing; installing it with apt-get");
  const apt = (args: string[]) =>
    new Deno.Command("apt-get", { args, stdout: "null", stderr: "inherit" }).output();
  if (!(await apt(["install", "-y", "wrk"])).success) {
    await apt(["update"]);
    await apt(["install", "-y", "wrk"]);
  }
  if (!(await has())) throw new Error("bench: could not install wrk (apt-get install -y wrk)");
}

/** What one wrk run measured. */
export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
}

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === "us" ? n / 1000 : unit === "s" ? n * 1000 : unit === "m" ? n * 60_000 : n;
}

/** One wrk run of `seconds` at `connections` with the Lua `script`. */
export async function wrk(
  url: string,
  connections: number,
  seconds: number,
  script: string,
): Promise<LoadResult> {
  const [program, args] = command(0, "wrk", [
    "-t1",
    `-c${connections}`,
    `-d${seconds}s`,
    "--latency",
    "-s",
    script,
    url,
  ]);
  const out = await new Deno.Command(program, {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const pct = (p: string) => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s|m)`).exec(text);
    return m ? toMs(m[1], m[2]) : NaN;
  };
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? 0);
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0) +
    [...text.matchAll(/(connect|read|write|timeout) (\d+)/g)].reduce((n, m) => n + Number(m[2]), 0);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? 0),
    p50: pct("50"),
    p99: pct("99"),
    requests,
    errors,
  };
}
