/**
 * kvgate's entry point: config → KV → gateway → serve.
 *
 * @module
 */
import { ConfigError, type GatewayConfig, loadConfig } from "./config/mod.ts";
import { createGateway, flushLog, jsonLog } from "./gateway/mod.ts";
import { kvCall } from "./kv/mod.ts";

function generatePassword(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return "kvg-" + btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

async function openKv(config: GatewayConfig): Promise<Deno.Kv> {
  const path = config.kvPath;
  if (path && path !== ":memory:" && !/^https?:\/\//.test(path)) {
    const dir = path.replace(/[^/]*$/, "");
    if (dir) await Deno.mkdir(dir, { recursive: true });
  }
  // Several processes creating one new SQLite file at once can meet
  // "database is locked": transient, so retried a bounded number of times.
  return await kvCall(() => Deno.openKv(path), { attempts: 10, timeoutMs: 10_000 });
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
    });
  }
}

async function main(): Promise<void> {
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
  if (config.password === undefined && !config.onDeploy) {
    config = { ...config, password: generatePassword() };
    console.error(
      `kvgate: ACCESS_PASSWORD is not set. Generated one for this run only:\n\n    ${config.password}\n\n` +
        `Set ACCESS_PASSWORD in the environment to choose your own and keep it across restarts.`,
    );
  } else if (config.password === undefined) {
    console.error("kvgate: ACCESS_PASSWORD is not set: every API request answers 503 until it is.");
  }
  const kv = await openKv(config);
  const gateway = await createGateway(config, { kv });
  summary(config);
  jsonLog({
    event: "start",
    instance: gateway.instanceId,
    limitMode: config.limitMode,
    kv: config.kvPath ?? "deploy",
  });

  const ac = new AbortController();
  const server = Deno.serve({
    port: config.port,
    hostname: Deno.env.get("HOST") ?? "0.0.0.0",
    signal: ac.signal,
    onListen: ({ hostname, port }) => jsonLog({ event: "listening", hostname, port }),
    onError: (e) => {
      jsonLog({ event: "internal_error", error: String(e) });
      return new Response("Internal Server Error", { status: 500 });
    },
  }, gateway.handler);

  // Deploy allows about 5 s after SIGTERM. Stop accepting, refuse the queue,
  // hand back unused tokens and idle slots at once, then give requests in
  // flight up to 4 s (each hands its slot back as it ends).
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    jsonLog({ event: "stopping", instance: gateway.instanceId });
    ac.abort();
    await gateway.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      server.finished.catch(() => {}),
      new Promise((r) => timer = setTimeout(r, 4000)),
    ]);
    clearTimeout(timer);
    jsonLog({ event: "stopped", instance: gateway.instanceId });
    flushLog();
    kv.close();
    Deno.exit(0);
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(sig, stop);
    } catch { /* not available on this platform */ }
  }
}

if (import.meta.main) await main();
