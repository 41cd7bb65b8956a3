/**
 * kvgate's entry point: config → KV → gateway → serve.
 *
 * @module
 */
import { ConfigError, type GatewayConfig, loadConfig, settingWarnings } from "./config/mod.ts";
import {
  createGateway,
  flushLog,
  type Gateway,
  jsonLog,
  logThroughConsole,
  startingHandler,
} from "./gateway/mod.ts";
import {
  connectKv,
  displayKvPath,
  type KvConnection,
  type KvLocation,
  KvPathError,
  kvWarning,
  parseKvPath,
} from "./kv/mod.ts";
import { systemClock } from "./lib/mod.ts";

function generatePassword(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return "kvg-" + btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

/**
 * Once KV is open the process writes nothing else: the broad write
 * permission that let it create KV_PATH anywhere is dropped. SQLite keeps
 * writing through the files it has open. Not available everywhere (Deploy).
 */
function dropWritePermission(): void {
  try {
    Deno.permissions.revokeSync({ name: "write" });
  } catch { /* the platform decides */ }
}

/** Where KV_PATH says KV lives; a value that cannot be used ends the process with one line. */
function kvLocation(config: GatewayConfig): KvLocation {
  try {
    return parseKvPath(config.kvPath, (name) => Deno.env.get(name));
  } catch (e) {
    if (!(e instanceof KvPathError)) throw e;
    console.error(`kvgate: ${e.message}`);
    Deno.exit(1);
  }
}

/** Opens KV at `location`; a file that cannot be used ends the process with one line. */
async function openKv(
  config: GatewayConfig,
  location: KvLocation,
  warning: string | undefined,
): Promise<KvConnection> {
  try {
    // Said once, plainly, where a store will never be shared (or never answer).
    if (warning) jsonLog({ event: "kv_warning", message: warning });
    // Only a KV file needs writing, and only until it is open; nothing else ever does.
    if (location.kind !== "file") dropWritePermission();
    return await connectKv(location, {
      clock: systemClock,
      timeoutMs: config.kvTimeoutMs,
      opened: location.kind === "file" ? dropWritePermission : undefined,
      log: (event, detail) => jsonLog({ event, ...detail }),
    });
  } catch (e) {
    if (!(e instanceof KvPathError)) throw e;
    console.error(`kvgate: ${e.message}`);
    Deno.exit(1);
  }
}

function summary(config: GatewayConfig): void {
  for (const s of Object.values(config.services)) {
    jsonLog({
      event: "service",
      service: s.name,
      prefix: `/${s.name}`,
      target: s.target,
      keys: s.keys.length,
      envKey: s.envKey,
      rps: s.rps,
      burst: s.burst,
      maxConn: s.maxConn,
      keyQuota: s.keyQuota,
      dayResetsAt: s.dayResetsAt,
      rateLimitHeaders: s.rateLimitHeaders,
    });
  }
}

/** The configuration, or the process exits with the message (before anything listens). */
function configure(): GatewayConfig {
  let config: GatewayConfig;
  try {
    config = loadConfig((name) => Deno.env.get(name));
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`kvgate: configuration error: ${e.message}`);
      Deno.exit(1);
    }
    throw e;
  }
  // On Deno Deploy (and with OpenTelemetry on) logs are what console.* makes.
  logThroughConsole(config.otel);
  if (config.password === undefined && !config.onDeploy) {
    config = { ...config, password: generatePassword() };
    // Straight to the terminal: Deno exports what console.* prints as OpenTelemetry log records.
    Deno.stderr.writeSync(
      new TextEncoder().encode(
        `kvgate: ACCESS_PASSWORD is not set. Generated one for this run only:\n\n    ${config.password}\n\n` +
          `Set ACCESS_PASSWORD in the environment to choose your own and keep it across restarts.\n`,
      ),
    );
  } else if (config.password === undefined) {
    console.error("kvgate: ACCESS_PASSWORD is not set: every API request answers 503 until it is.");
  }
  return config;
}

async function main(): Promise<void> {
  const config = configure();
  // A remote KV (Deno Deploy's, KV Connect) is a round trip or more away:
  // serve first, and let requests that come meanwhile wait for the gateway.
  // A local file opens in microseconds, and a path that cannot be used must
  // stop start-up before anything listens.
  const location = kvLocation(config);
  const remote = location.kind === "deploy" || location.kind === "remote";
  let ready: (g: Gateway) => void = () => {};
  const built = new Promise<Gateway>((r) => ready = r);
  const early = remote
    ? listen(
      config,
      startingHandler(
        [...Object.keys(config.services), ...config.groups.map((g) => g.name)],
        built,
      ),
    )
    : undefined;
  const warning = kvWarning(location, config.onDeploy, typeof Deno.openKv === "function");
  const kv = await openKv(config, location, warning);
  const gateway = await createGateway(config, {
    kv: kv.kv,
    kvStatus: kv.status,
    kvWarning: warning,
    // A KV file may be shared by processes, and SQLite tells none of another's writes.
    watchKv: remote,
    region: Deno.env.get("DENO_REGION"),
  });
  ready(gateway);
  startLog(config, gateway, kv);
  const server = early ?? listen(config, gateway.handler);
  const stop = stopper(config, gateway, server, kv);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(sig, stop);
    } catch { /* not available on this platform */ }
  }
}

/**
 * Deno Deploy sends SIGINT when it replaces or stops an isolate, and
 * SIGKILL 5 s later; elsewhere SIGTERM (or Ctrl-C) means the same. One
 * budget from the signal (shutdownMs, 4.5 s) holds the whole shutdown:
 * the listener stays open, so that a request that still arrives is told
 * 503 gateway_closing (with Connection: close) rather than refused without
 * a word; responses in flight run while the hand-backs are written, for
 * what is left once time for the last KV writes is kept; then the server
 * closes. A repeated signal changes nothing: Ctrl-C under `deno task`
 * reaches the process twice (from the terminal, and forwarded by the task).
 */
function stopper(
  config: GatewayConfig,
  gateway: Gateway,
  server: Deno.HttpServer,
  kv: KvConnection,
): () => Promise<void> {
  let stopping = false;
  return async () => {
    if (stopping) return;
    stopping = true;
    const signalled = Date.now();
    jsonLog({ event: "stopping", instance: gateway.instanceId, shutdownMs: config.shutdownMs });
    const report = await gateway.drain(config.shutdownMs);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const left = Math.max(0, Math.min(250, signalled + config.shutdownMs + 250 - Date.now()));
    await Promise.race([
      server.shutdown().catch(() => {}),
      new Promise((r) => timer = setTimeout(r, left)),
    ]);
    clearTimeout(timer);
    jsonLog({
      event: "stopped",
      instance: gateway.instanceId,
      ...report,
      sinceSignalMs: Date.now() - signalled,
    });
    flushLog();
    kv.close();
    Deno.exit(0);
  };
}

/** The start-up lines: each service, the shared admin warning, and where KV lives. */
function startLog(config: GatewayConfig, gateway: Gateway, kv: KvConnection): void {
  summary(config);
  if (config.adminPassword === undefined && config.accessPasswordAdmin) {
    jsonLog({
      event: "warning",
      message:
        "ACCESS_PASSWORD also opens the admin API. Set ADMIN_PASSWORD to give the admin a credential of its own.",
    });
  }
  for (const message of settingWarnings(config)) jsonLog({ event: "warning", message });
  jsonLog({
    event: "start",
    instance: gateway.instanceId,
    pid: Deno.pid,
    deno: Deno.version.deno,
    limitMode: config.limitMode,
    kv: config.kvPath === undefined ? "deploy" : displayKvPath(config.kvPath),
    kvUp: kv.status.up,
  });
}

/** Listens on PORT and HOST with `handler`. */
function listen(config: GatewayConfig, handler: Deno.ServeHandler): Deno.HttpServer<Deno.NetAddr> {
  return serveOrExit({
    port: config.port,
    hostname: Deno.env.get("HOST") ?? "0.0.0.0",
    onListen: ({ hostname, port }) =>
      jsonLog({ event: "listening", hostname, port, pid: Deno.pid }),
    onError: (e) => {
      jsonLog({ event: "internal_error", error: String(e) });
      return new Response("Internal Server Error", { status: 500 });
    },
  }, handler);
}

/** Deno.serve, or one line and exit 1 when the port cannot be had (taken, or not allowed). */
function serveOrExit(
  options: Deno.ServeTcpOptions,
  handler: Deno.ServeHandler,
): Deno.HttpServer<Deno.NetAddr> {
  try {
    return Deno.serve(options, handler);
  } catch (e) {
    const why = e instanceof Deno.errors.AddrInUse
      ? "another process is listening there"
      : e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : String(e);
    console.error(`kvgate: cannot listen on ${options.hostname}:${options.port}: ${why}`);
    Deno.exit(1);
  }
}

if (import.meta.main) await main();
