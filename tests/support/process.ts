/**
 * Real gateway processes for end-to-end tests: started the way the README
 * tells users to (`deno task start`, or `deno run … main.ts` as the task
 * runs it), their output read to the end and kept for assertions.
 *
 * @module
 */
import { PASSWORD } from "./harness.ts";
import { freePort } from "./net.ts";

const ROOT = new URL("../../", import.meta.url);

/** The variables Deno Deploy sets for an app (no DENO_REGION: its docs do not name one). */
export const DEPLOY_ENV: Readonly<Record<string, string>> = {
  DENO_DEPLOY: "true",
  DENO_DEPLOYMENT_ID: "test-deployment",
  DENO_TIMELINE: "production",
};

/** What a child process printed, kept (up to 1 MiB) while it runs. */
export interface Output {
  /** Resolves at the first line that contains the marker, if one was given. */
  ready: Promise<void>;
  /** Resolves once the stream has been read to the end. */
  done: Promise<void>;
  text(): string;
  /** The JSON lines printed so far, parsed (other lines skipped). */
  events(): Record<string, unknown>[];
}

/** Reads a child's output to the end (a pipe left unread would stall it). */
export function readOutput(stream: ReadableStream<Uint8Array>, marker?: string): Output {
  let text = "";
  let markReady: () => void = () => {};
  const ready = new Promise<void>((r) => markReady = r);
  const done = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const part = decoder.decode(chunk, { stream: true });
      if (text.length < 1 << 20) text += part;
      if (marker && text.includes(marker)) markReady();
    }
  })();
  return {
    ready,
    done,
    text: () => text,
    events: () =>
      text.split("\n").flatMap((line) => {
        if (!line.startsWith("{")) return [];
        try {
          return [JSON.parse(line)];
        } catch {
          return [];
        }
      }),
  };
}

/**
 * The JSON lines that match, once at least `atLeast` of them are printed or
 * `withinMs` has passed. A gateway writes its request lines in batches (up
 * to 250 ms late, `gateway/log.ts`), and {@linkcode stopProcesses} kills it
 * without a flush: read what a test asserts about before stopping it.
 */
export async function loggedEvents(
  output: Output,
  matches: (line: Record<string, unknown>) => boolean,
  atLeast: number,
  withinMs = 3000,
): Promise<Record<string, unknown>[]> {
  const end = Date.now() + withinMs;
  for (;;) {
    const lines = output.events().filter(matches);
    if (lines.length >= atLeast || Date.now() >= end) return lines;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A running gateway process. */
export interface GatewayProcess {
  url: string;
  port: number;
  child: Deno.ChildProcess;
  stdout: Output;
  stderr: Output;
  /** Resolves once the child's output has been read to the end. */
  drained: Promise<unknown>;
}

/** Options for {@linkcode startGatewayProcess}. */
export interface ProcessOptions {
  kvPath: string;
  config?: unknown;
  /** Extra environment (keys, tokens). Default: two openai keys. */
  env?: Record<string, string>;
  /**
   * "task": `deno task start` as the README says; "run": `deno run -A main.ts`;
   * "deploy": `deno run -A main.ts` and no flag more, as Deno Deploy runs it
   * (only deno.json applies). Default "task".
   */
  how?: "task" | "run" | "deploy";
  /** Flags of `deno run` put before the script (with "run" or "deploy"), such as V8's. */
  denoFlags?: string[];
  /** Give up waiting for "listening" after this long, in ms. Default 20000. */
  readyMs?: number;
}

/**
 * Starts a gateway process and resolves once it listens. The port was free
 * when picked, but another process (a sibling started at the same moment, a
 * client's socket) can take it before the child listens: then the child
 * exits with AddrInUse and is started again on a new port, at most three times.
 */
export async function startGatewayProcess(options: ProcessOptions): Promise<GatewayProcess> {
  for (let attempt = 1;; attempt++) {
    try {
      return await startOnce(options);
    } catch (e) {
      if (attempt >= 3 || !String(e).includes("AddrInUse")) throw e;
    }
  }
}

/** The command line of a gateway process. */
function argsFor(options: ProcessOptions): string[] {
  const flags = options.denoFlags ?? [];
  switch (options.how ?? "task") {
    case "task":
      return ["task", "start"];
    case "deploy":
      return ["run", "-A", ...flags, "main.ts"];
    default:
      return ["run", "-A", "--unstable-kv", "--unstable-no-legacy-abort", ...flags, "main.ts"];
  }
}

/** Starts a process that is expected to exit; resolves to its code and output. */
export async function runGatewayToExit(
  options: ProcessOptions,
  timeoutMs = 20_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(options, freePort());
  const stdout = readOutput(child.stdout);
  const stderr = readOutput(child.stderr);
  // A gateway that did not stop is killed by its own pid too: under `deno task`
  // a SIGKILL to the task would leave it running, holding the pipes open.
  const timer = setTimeout(() => {
    const line = stdout.events().find((e) => typeof e.pid === "number");
    for (const pid of [line?.pid as number | undefined, child.pid]) {
      try {
        if (pid !== undefined) Deno.kill(pid, "SIGKILL");
      } catch { /* already gone */ }
    }
  }, timeoutMs);
  const status = await child.status;
  clearTimeout(timer);
  await Promise.all([stdout.done, stderr.done]);
  return { code: status.code, stdout: stdout.text(), stderr: stderr.text() };
}

function spawn(options: ProcessOptions, port: number): Deno.ChildProcess {
  // KVGATE_TEST_DENO: another Deno to run the gateway with (.ci/run runs the Deploy tests on 2.5.6).
  // As Deploy starts it: a clean environment, Deploy's variables and kvgate's
  // own only (HOME and DENO_DIR let this machine's Deno find its cache).
  const deploy = options.how === "deploy";
  const machine = deploy
    ? Object.fromEntries(
      ["HOME", "DENO_DIR"].flatMap((k) => Deno.env.get(k) ? [[k, Deno.env.get(k)!]] : []),
    )
    : {};
  return new Deno.Command(Deno.env.get("KVGATE_TEST_DENO") || Deno.execPath(), {
    args: argsFor(options),
    cwd: ROOT,
    clearEnv: deploy,
    env: {
      ...machine,
      PORT: String(port),
      HOST: "127.0.0.1",
      KV_PATH: options.kvPath,
      ACCESS_PASSWORD: PASSWORD,
      OPENAI_API_KEYS: "sk-one,sk-two",
      GATEWAY_CONFIG: JSON.stringify(options.config ?? {}),
      NO_COLOR: "1",
      ...options.env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function startOnce(options: ProcessOptions): Promise<GatewayProcess> {
  const port = freePort();
  const child = spawn(options, port);
  // Listening on our port, said by this very child (not another that took the port).
  const stdout = readOutput(
    child.stdout,
    `"event":"listening","hostname":"127.0.0.1","port":${port}`,
  );
  const stderr = readOutput(child.stderr);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    stdout.ready.then(() => "ready" as const),
    child.status.then(() => "exited" as const),
    new Promise<"timeout">((r) =>
      timer = setTimeout(() => r("timeout"), options.readyMs ?? 20_000)
    ),
  ]);
  clearTimeout(timer);
  if (outcome !== "ready") {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    await Promise.all([stdout.done, stderr.done]);
    throw new Error(`gateway process ${outcome} before listening; stderr: ${stderr.text()}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    child,
    stdout,
    stderr,
    drained: Promise.all([stdout.done, stderr.done]),
  };
}

/** The gateway's own process id, from its start line (under a task, the task's child). */
export function gatewayPid(p: GatewayProcess): number {
  // "listening" may come first (a remote KV: it serves first), so either line says.
  const line = p.stdout.events().find((e) =>
    (e.event === "listening" || e.event === "start") && typeof e.pid === "number"
  );
  if (typeof line?.pid !== "number") throw new Error("no pid in the listening or start line");
  return line.pid;
}

/**
 * Stops the processes at once and waits for them and their output. The
 * gateway itself is killed by its pid: under `deno task start` a SIGKILL to
 * the task would leave the gateway running, holding the port and the pipes.
 */
export async function stopProcesses(procs: GatewayProcess[]): Promise<void> {
  for (const p of procs) {
    let pids = [p.child.pid];
    try {
      pids = [gatewayPid(p), p.child.pid];
    } catch { /* it never started: the task alone */ }
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* already gone */ }
    }
  }
  for (const p of procs) {
    await p.child.status;
    await p.drained;
  }
}
