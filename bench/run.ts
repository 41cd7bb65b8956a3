/**
 * The load benchmark (issue 4): kvgate next to the floor, in one run, on
 * loopback. One mock upstream process (bench/mock_upstream.ts) with a fixed
 * latency; the same loads against each target in turn:
 *
 * 1. `direct` — the mock itself (the limit);
 * 2. `minimal` — bench/minimal_proxy.ts, a bare pass-through Deno proxy (the floor);
 * 3. `js-relay` — the same proxy with its answers passed through a JavaScript pull stream (the
 *    floor of any relay that looks at the chunks);
 * 4. `kvgate` — main.ts with limits far above the load (pacing on, never binding), KV in a file,
 *    the default configuration (streams relayed natively);
 * 5. `kvgate-binding` — main.ts with limits the load exceeds (the queue's cost);
 * 6. `kvgate-observe` — main.ts as 4, with `streamRelay: "observe"` (every chunk through kvgate).
 *
 * Loads: non-streaming chat completions at 1 connection (latency) and 32
 * connections (throughput) with wrk; SSE streams of 20 and of 500 events
 * sent back to back, at 32 connections with wrk (CPU per stream, streams/s);
 * and streaming (time to first chunk and to the last) with a Deno client. Each target runs twice, interleaved
 * (the second round in reverse order). Each measured phase follows a warm-up
 * at its own load (`BENCH_WARM_S`, default 3 s): a phase then measures the
 * steady state of that load, not the way in from the phase before it.
 * Per phase: requests/s, p50, p99, and the proxy process's CPU time per
 * request from /proc/<pid>/stat before and after. Then CPU per request at
 * 1 connection once more, with the minimal proxy and kvgate loaded at the
 * same time (see bench/paired.ts); then CPU per stream the same way, 20 and
 * 500 events, with the minimal proxy, the JavaScript relay and both of
 * kvgate's relays loaded at once. Then memory: 10,000 requests
 * queued behind a binding limit, then all aborted.
 *
 * Run: `deno task bench` (needs wrk: `apt-get install -y wrk`; the task installs it if missing).
 * `BENCH_BASELINE_ROOT=<another checkout>` adds that kvgate (both relays) as more targets, for
 * before/after figures in one run, requests and streams; `BENCH_PHASE_S`, `BENCH_WARM_S`, `BENCH_STREAMS`, `BENCH_PAIRED_ROUNDS` (0
 * skips the paired phase) and `BENCH_QUEUED` (0 skips memory) shorten it.
 * `BENCH_ONLY_PAIRED=1 BENCH_PAIRED_CONNS=32` runs the paired phases alone, requests at 32
 * connections; `BENCH_PAIRED_STREAM_CONNS` (default 8) sets each target's connections for streams,
 * `BENCH_PAIRED_EVENT_MS` (default 0) the time between their events, and `BENCH_PAIRED_CONTROL=1`
 * adds a second copy of the JavaScript relay to them: its ratio to the first is the harness's noise.
 * `BENCH_PAIRED_FLOOR=1` adds the minimal proxy that reads each request's body whole before sending
 * it (`BODY=whole`, what any gateway that can retry must do) to the paired phases: kvgate ÷ it is
 * what kvgate's own work costs beyond that.
 *
 * @module
 */

import { ensureWrk, PIN, type Proc, start, stop, wrk as wrkRun } from "./load_kit.ts";
import { pairedRound, pairedRounds, pairedTable } from "./paired.ts";
import {
  BENCH_PASSWORD as PASSWORD,
  CHAT_LUA,
  kvgateEnv,
  queueMemoryArgs,
  streamLua,
} from "./bench_kit.ts";

const DENO = Deno.execPath();
const ROOT = new URL("../", import.meta.url);
const PHASE_S = Number(Deno.env.get("BENCH_PHASE_S") ?? 5);
const WARM_S = Number(Deno.env.get("BENCH_WARM_S") ?? 3);
const STREAMS = Number(Deno.env.get("BENCH_STREAMS") ?? 100);
const QUEUED = Number(Deno.env.get("BENCH_QUEUED") ?? 10_000);
const PAIRED_ROUNDS = Number(Deno.env.get("BENCH_PAIRED_ROUNDS") ?? 6);
/** Connections of each target's wrk in the paired phase (1 by default; 32 shows the cost under load). */
const PAIRED_CONNS = Number(Deno.env.get("BENCH_PAIRED_CONNS") ?? 1);
/** Connections of each target's wrk in the paired stream phase. */
const PAIRED_STREAM_CONNS = Number(Deno.env.get("BENCH_PAIRED_STREAM_CONNS") ?? 8);
/** `BENCH_PAIRED_EVENT_MS`: the events of the paired stream phases this far apart (default 0, back to back). */
const PAIRED_EVENT_MS = Number(Deno.env.get("BENCH_PAIRED_EVENT_MS") ?? 0);
const CONTROL = Deno.env.get("BENCH_PAIRED_CONTROL") === "1";
const FLOOR = Deno.env.get("BENCH_PAIRED_FLOOR") === "1";
/** `BENCH_ONLY_PAIRED=1`: the paired phases alone (no load phases, no memory, no micro-benchmarks). */
const ONLY_PAIRED = Deno.env.get("BENCH_ONLY_PAIRED") === "1";
const CLK_TCK = 100; // Linux USER_HZ: /proc times are in 1/100 s.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** utime + stime of a process, in ms. */
function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

/** Established TCP connections whose local port is `port` (the server side). */
function connectionsTo(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  let n = 0;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[1]?.endsWith(`:${hex}`) && cols[3] === "01") n++;
    }
  }
  return n;
}

await ensureWrk();
const LUA = await Deno.makeTempFile({ suffix: ".lua" });
await Deno.writeTextFile(LUA, CHAT_LUA);
/** A wrk run of the chat load, or of `script`. */
const wrk = (url: string, connections: number, seconds: number, script = LUA) =>
  wrkRun(url, connections, seconds, script);
/** Streamed answers under load: 20 events (a short answer) and 500 (a long one), back to back. */
const STREAM_LOADS = [20, 500] as const;
const STREAM_LUA: Record<number, string> = {};
/** The paired stream phases' scripts: events `PAIRED_EVENT_MS` apart. */
const PAIRED_STREAM_LUA: Record<number, string> = {};
for (const n of STREAM_LOADS) {
  STREAM_LUA[n] = await Deno.makeTempFile({ suffix: ".lua" });
  await Deno.writeTextFile(STREAM_LUA[n], streamLua(n));
  PAIRED_STREAM_LUA[n] = await Deno.makeTempFile({ suffix: ".lua" });
  await Deno.writeTextFile(PAIRED_STREAM_LUA[n], streamLua(n, PAIRED_EVENT_MS));
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** Sequential streaming requests: time to the first body chunk and to the end. */
async function streams(url: string, n: number) {
  const first: number[] = [];
  const last: number[] = [];
  let errors = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "bench-model", stream: true, messages: [] }),
    });
    if (!r.ok || !r.body) {
      errors++;
      await r.body?.cancel();
      continue;
    }
    const reader = r.body.getReader();
    let got = false;
    while (true) {
      const { done } = await reader.read();
      if (!got) {
        first.push(performance.now() - t0);
        got = true;
      }
      if (done) break;
    }
    last.push(performance.now() - t0);
  }
  return { first: percentile(first, 50), last: percentile(last, 50), errors };
}

interface Row {
  round: number;
  target: string;
  load: string;
  rps: number;
  p50: number;
  p99: number;
  cpuPerReqMs: number;
  errors: number;
}

async function measure(p: Proc, round: number, rows: Row[]): Promise<void> {
  const url = p.base + p.path;
  const pid = p.name === "direct" ? NaN : p.child.pid;
  const cpu = () => Number.isNaN(pid) ? NaN : cpuMs(pid);
  for (const conns of [1, 32]) {
    // Warm-up at this phase's own load: JIT, connection pools, heap size,
    // and for kvgate the slots and token leases that load needs. A target
    // sits idle while the others are measured, and the first seconds after
    // idling, or after a change of load, cost every target more CPU per
    // request (kvgate's most, up to a few seconds).
    await wrk(url, 32, WARM_S);
    if (conns !== 32) await wrk(url, conns, WARM_S);
    const before = cpu();
    const r = await wrk(url, conns, PHASE_S);
    const used = cpu() - before;
    rows.push({
      round,
      target: p.name,
      load: `${conns} conn`,
      rps: r.rps,
      p50: r.p50,
      p99: r.p99,
      cpuPerReqMs: used / Math.max(1, r.requests),
      errors: r.errors,
    });
  }
  for (const n of STREAM_LOADS) {
    // Streams under load: the relay's cost per chunk shows here.
    await wrk(url, 32, WARM_S, STREAM_LUA[n]);
    const before = cpu();
    const r = await wrk(url, 32, PHASE_S, STREAM_LUA[n]);
    rows.push({
      round,
      target: p.name,
      load: `sse${n} 32 conn`,
      rps: r.rps,
      p50: r.p50,
      p99: r.p99,
      cpuPerReqMs: (cpu() - before) / Math.max(1, r.requests),
      errors: r.errors,
    });
  }
  const before = cpu();
  const s = await streams(url, STREAMS);
  rows.push({
    round,
    target: p.name,
    load: "stream",
    rps: NaN,
    p50: s.first,
    p99: s.last,
    cpuPerReqMs: (cpu() - before) / STREAMS,
    errors: s.errors,
  });
}

const f = (n: number, d = 3) => Number.isFinite(n) ? n.toFixed(d) : "-";

async function main() {
  const dir = await Deno.makeTempDir();
  if (PIN) {
    await new Deno.Command("taskset", { args: ["-cp", "0", String(Deno.pid)], stdout: "null" })
      .output();
  }
  const mock = await start(
    "direct",
    "bench/mock_upstream.ts",
    {
      LATENCY_MS: "2",
      CHUNKS: "10",
      CHUNK_DELAY_MS: "2",
    },
    "/v1/chat/completions",
    0,
  );
  const minimal = await start("minimal", "bench/minimal_proxy.ts", {
    TARGET: mock.base,
  }, "/v1/chat/completions");
  const jsRelay = await start("js-relay", "bench/minimal_proxy.ts", {
    TARGET: mock.base,
    RELAY: "pull",
  }, "/v1/chat/completions");
  const kvgate = await start(
    "kvgate",
    "main.ts",
    kvgateEnv(mock.base, `${dir}/free.sqlite3`, { rps: 1e6, burst: 1e6, maxConn: 10_000 }),
    "/openai/v1/chat/completions",
  );
  const binding = await start(
    "kvgate-binding",
    "main.ts",
    kvgateEnv(mock.base, `${dir}/binding.sqlite3`, { rps: 500, burst: 50, maxConn: 16 }),
    "/openai/v1/chat/completions",
  );
  // The same kvgate with every stream passed chunk by chunk through kvgate (streamRelay "observe").
  const observe = await start(
    "kvgate-observe",
    "main.ts",
    kvgateEnv(mock.base, `${dir}/observe.sqlite3`, {
      rps: 1e6,
      burst: 1e6,
      maxConn: 10_000,
      streamRelay: "observe",
    }),
    "/openai/v1/chat/completions",
  );
  const targets = [mock, minimal, jsRelay, kvgate, binding, observe];
  // More minimal proxies for the paired phases: BENCH_PAIRED_CONTROL=1, a second JavaScript relay
  // (paired with the first); BENCH_PAIRED_FLOOR=1, the floor of a proxy that can retry (it reads
  // the body whole).
  const variants: Record<string, Record<string, string>> = {};
  if (CONTROL) variants["js-relay-control"] = { RELAY: "pull" };
  if (FLOOR) variants["minimal-whole-body"] = { BODY: "whole" };
  for (const [name, env] of Object.entries(variants)) {
    const variant = { TARGET: mock.base, ...env };
    targets.push(await start(name, "bench/minimal_proxy.ts", variant, "/v1/chat/completions"));
  }
  // Another checkout of kvgate (an earlier commit, say), measured in the same run.
  const beforeRoot = Deno.env.get("BENCH_BASELINE_ROOT");
  if (beforeRoot) {
    for (const relay of ["native", "observe"]) {
      targets.push(
        await start(
          relay === "native" ? "kvgate-baseline" : "kvgate-observe-baseline",
          "main.ts",
          kvgateEnv(mock.base, `${dir}/baseline-${relay}.sqlite3`, {
            rps: 1e6,
            burst: 1e6,
            maxConn: 10_000,
            streamRelay: relay,
          }),
          "/openai/v1/chat/completions",
          1,
          beforeRoot,
        ),
      );
    }
  }
  const mem = await Deno.readTextFile("/proc/meminfo").then((t) =>
    Math.round(Number(/MemTotal:\s+(\d+)/.exec(t)?.[1]) / 1024 / 1024)
  );
  console.log(
    `# kvgate load benchmark — ${
      new Date().toISOString().slice(0, 10)
    }, Deno ${Deno.version.deno}, ` +
      `${navigator.hardwareConcurrency} cores, ${mem} GiB; mock latency 2 ms, ${PHASE_S} s per phase, ` +
      `${STREAMS} streams of 10 chunks 2 ms apart; ${
        PIN ? "proxy pinned to core 1, mock + wrk + client to core 0" : "not pinned"
      }`,
  );
  const rows: Row[] = [];
  let paired: string[] = [];
  try {
    for (const round of ONLY_PAIRED ? [] : [1, 2]) {
      // The second round runs in reverse order, so that a drift in the
      // machine's speed does not favour the targets measured first.
      const order = round === 1 ? targets : [...targets].reverse();
      for (const t of order) await measure(t, round, rows);
    }
    if (PAIRED_ROUNDS > 0) {
      const baseline = targets.filter((t) => t.name === "kvgate-baseline");
      const streamBaselines = targets.filter((t) => t.name.endsWith("-baseline"));
      const floor = targets.filter((t) => t.name === "minimal-whole-body");
      paired = [
        ...await pairedPhase([minimal, kvgate, ...baseline, ...floor]),
        ...await pairedStreamPhase([
          minimal,
          jsRelay,
          kvgate,
          observe,
          ...streamBaselines,
          ...targets.filter((t) => t.name === "js-relay-control"),
          ...floor,
        ]),
      ];
    }
  } finally {
    for (const t of targets.slice(1)) await stop(t);
  }

  console.log(
    "\nround | target | load | req/s | p50 ms | p99 ms | CPU ms/req | errors   (stream: p50 = first chunk, p99 column = last chunk, both p50)",
  );
  for (const r of rows) {
    console.log(
      [r.round, r.target, r.load, f(r.rps, 0), f(r.p50), f(r.p99), f(r.cpuPerReqMs, 4), r.errors]
        .join(" | "),
    );
  }
  if (ONLY_PAIRED) {
    for (const line of paired) console.log(line);
    await stop(mock);
    return;
  }
  console.log("\nRatios against the minimal proxy of the same round:");
  console.log(
    "round | target | CPU/req (1 conn) | CPU/req (32 conn) | req/s (32 conn) | p50 added ms (1 conn) | first chunk | last chunk | CPU/stream sse20 | streams/s sse20 | CPU/stream sse500 | streams/s sse500",
  );
  for (const round of [1, 2]) {
    const get = (target: string, load: string) =>
      rows.find((r) => r.round === round && r.target === target && r.load === load)!;
    const compared = ["js-relay", "kvgate", "kvgate-binding", "kvgate-observe"];
    for (const target of [...compared, ...(beforeRoot ? ["kvgate-baseline"] : [])]) {
      console.log(
        [
          round,
          target,
          f(get(target, "1 conn").cpuPerReqMs / get("minimal", "1 conn").cpuPerReqMs, 2),
          f(get(target, "32 conn").cpuPerReqMs / get("minimal", "32 conn").cpuPerReqMs, 2),
          f(get(target, "32 conn").rps / get("minimal", "32 conn").rps, 2),
          f(get(target, "1 conn").p50 - get("minimal", "1 conn").p50),
          f(get(target, "stream").p50 / get("minimal", "stream").p50, 2),
          f(get(target, "stream").p99 / get("minimal", "stream").p99, 2),
          ...STREAM_LOADS.flatMap((n) => [
            f(
              get(target, `sse${n} 32 conn`).cpuPerReqMs /
                get("minimal", `sse${n} 32 conn`).cpuPerReqMs,
              2,
            ),
            f(get(target, `sse${n} 32 conn`).rps / get("minimal", `sse${n} 32 conn`).rps, 2),
          ]),
        ].join(" | "),
      );
    }
    console.log(
      `${round} | wrk ceiling | direct ${
        f(get("direct", "32 conn").rps, 0)
      } req/s at 32 conn vs minimal ${f(get("minimal", "32 conn").rps, 0)}`,
    );
  }

  for (const line of paired) console.log(line);

  if (QUEUED > 0) await memoryPhase(mock, dir);
  await stop(mock);
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(LUA);
  for (const n of STREAM_LOADS) {
    await Deno.remove(STREAM_LUA[n]);
    await Deno.remove(PAIRED_STREAM_LUA[n]);
  }
}

/**
 * CPU per request at `PAIRED_CONNS` connection(s) with the targets loaded at
 * the same time, each by its own wrk, all pinned to the same core (see
 * bench/paired.ts): every ratio is against the first target, and kvgate's (the second) against
 * the other checkout and the floor of a retrying proxy when they are there.
 */
async function pairedPhase(targets: Proc[]): Promise<string[]> {
  await pairedRound(targets, { conns: 32, seconds: WARM_S, script: LUA });
  await pairedRound(targets, { conns: 1, seconds: 2 * WARM_S, script: LUA });
  const load = { conns: PAIRED_CONNS, seconds: PHASE_S, script: LUA };
  const title = `\n## CPU per request at ${PAIRED_CONNS} connection(s), paired: ${
    targets.map((t) => t.name).join(", ")
  } at once, each under its own wrk at ${PAIRED_CONNS} connection(s), ${
    PIN ? "all on core 1" : "not pinned"
  } (${PAIRED_ROUNDS} rounds of ${PHASE_S} s, after ${WARM_S} s at 32 and ${
    2 * WARM_S
  } s at 1 connection)`;
  const ratios = targets.slice(1).map((_, i): [number, number] => [i + 1, 0]);
  for (const name of ["kvgate-baseline", "minimal-whole-body"]) {
    const other = targets.findIndex((t) => t.name === name);
    if (other > 0) ratios.push([1, other]);
  }
  return pairedTable(title, targets, await pairedRounds(targets, load, PAIRED_ROUNDS), ratios);
}

/**
 * The ratios a paired stream phase reports, of the targets it has: each
 * relay against its floor; with a baseline checkout, each relay against
 * itself of the commit before; with the control, the JavaScript relay
 * against a second copy of itself — the harness's own noise, the spread a
 * ratio between two relays must beat before it says anything.
 */
function streamRatios(targets: Proc[]): [number, number][] {
  const at = (name: string) => targets.findIndex((t) => t.name === name);
  return [
    ["kvgate", "minimal"],
    ["js-relay", "minimal"],
    ["kvgate-observe", "js-relay"],
    ["js-relay-control", "js-relay"],
    ["kvgate", "minimal-whole-body"],
    ["minimal-whole-body", "minimal"],
    ["kvgate", "kvgate-baseline"],
    ["kvgate-observe", "kvgate-observe-baseline"],
  ].map(([a, b]): [number, number] => [at(a), at(b)]).filter(([i, j]) => i >= 0 && j >= 0);
}

/**
 * CPU per stream, 20 and 500 events, with the minimal proxy, the JavaScript
 * relay, kvgate's two relays (and any baseline or control) loaded at once:
 * the ratios of {@linkcode streamRatios}.
 */
async function pairedStreamPhase(targets: Proc[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of STREAM_LOADS) {
    const load = { conns: PAIRED_STREAM_CONNS, seconds: PHASE_S, script: PAIRED_STREAM_LUA[n] };
    await pairedRound(targets, { ...load, seconds: WARM_S });
    const title = `\n## CPU per stream of ${n} events, paired: ${
      targets.map((t) => t.name).join(", ")
    } at once, each under its own wrk at ${PAIRED_STREAM_CONNS} connections, events ${PAIRED_EVENT_MS} ms apart (${PAIRED_ROUNDS} rounds of ${PHASE_S} s)`;
    const perRound = await pairedRounds(targets, load, PAIRED_ROUNDS);
    out.push(...pairedTable(title, targets, perRound, streamRatios(targets)));
  }
  return out;
}

interface HeldResult {
  open: number;
  rssBefore: number;
  rssHeld: number;
  rssAfter: number;
}

/** Opens QUEUED requests to `url` at once, measures the server's RSS, aborts them all. */
async function holdOverSockets(p: Proc, url: string): Promise<HeldResult> {
  const port = Number(new URL(p.base).port);
  const post = (signal?: AbortSignal) =>
    fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
      body: "{}",
      signal,
    }).then((r) => r.body?.cancel(), () => {});
  // Warm the path with a small round, then let the process settle.
  const warm = new AbortController();
  const warming = Array.from({ length: 100 }, () => post(warm.signal));
  await sleep(1000);
  warm.abort();
  await Promise.all(warming);
  await sleep(2000);
  const rssBefore = rssKiB(p.child.pid);
  const ac = new AbortController();
  const pending = Array.from({ length: QUEUED }, () => post(ac.signal));
  const t0 = Date.now();
  while (connectionsTo(port) < QUEUED && Date.now() - t0 < 60_000) await sleep(200);
  await sleep(2000);
  const open = connectionsTo(port);
  const rssHeld = rssKiB(p.child.pid);
  ac.abort();
  await Promise.all(pending);
  const t1 = Date.now();
  while (connectionsTo(port) > 0 && Date.now() - t1 < 30_000) await sleep(200);
  await sleep(3000);
  return { open, rssBefore, rssHeld, rssAfter: rssKiB(p.child.pid) };
}

/** 10,000 requests queued behind a binding limit, then every client aborts. */
async function memoryPhase(mock: Proc, dir: string): Promise<void> {
  const stats = async () => (await fetch(`${mock.base}/stats`)).json();
  const parking = await start("parking", "bench/parking_server.ts", {}, "/v1/chat/completions");
  const floor = await holdOverSockets(parking, parking.base + parking.path).finally(() =>
    stop(parking)
  );
  const gw = await start(
    "kvgate-queue",
    "main.ts",
    kvgateEnv(mock.base, `${dir}/queue.sqlite3`, { rps: 1, burst: 1, maxConn: 1 }),
    "/openai/v1/chat/completions",
  );
  let queued: HeldResult;
  let upstream: { during: number; inFlightAfter: number; inTwoSecondsAfter: number };
  let idleCpuMs: number;
  try {
    const upstreamBefore = (await stats()).received;
    queued = await holdOverSockets(gw, gw.base + gw.path);
    const after = await stats();
    const cpuBefore = cpuMs(gw.child.pid);
    await sleep(2000);
    idleCpuMs = cpuMs(gw.child.pid) - cpuBefore;
    upstream = {
      during: after.received - upstreamBefore,
      inFlightAfter: after.inFlight,
      inTwoSecondsAfter: (await stats()).received - after.received,
    };
  } finally {
    await stop(gw);
  }
  const per = (r: HeldResult) => ((r.rssHeld - r.rssBefore) * 1024) / Math.max(1, r.open);
  console.log(
    `\n## Memory: ${QUEUED} requests held at once over loopback sockets, then all aborted`,
  );
  console.log(
    "server | connections | RSS before KiB | RSS held KiB | bytes per request | RSS after abort KiB | after ÷ before",
  );
  for (const [name, r] of [["parking (floor)", floor], ["kvgate queued", queued]] as const) {
    console.log(
      [
        name,
        r.open,
        r.rssBefore,
        r.rssHeld,
        f(per(r), 0),
        r.rssAfter,
        f(r.rssAfter / r.rssBefore, 2),
      ]
        .join(" | "),
    );
  }
  console.log(
    `kvgate's own share per queued request: ${f(per(queued) - per(floor), 0)} bytes; ` +
      `upstream requests while queued: ${upstream.during} (rps 1 admits about one a second), ` +
      `in flight after the aborts: ${upstream.inFlightAfter}, sent in the 2 s after: ${upstream.inTwoSecondsAfter}; ` +
      `kvgate CPU in those 2 s: ${idleCpuMs} ms`,
  );

  const inProcess = await new Deno.Command(DENO, {
    args: queueMemoryArgs(QUEUED),
    cwd: ROOT,
    stdout: "piped",
  }).output();
  console.log(`\n## Memory in process (bench/queue_memory.ts, V8 heap after GC, no sockets)`);
  console.log(new TextDecoder().decode(inProcess.stdout).trim());
}

if (import.meta.main) await main();
