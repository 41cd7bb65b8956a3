/**
 * A KV Connect server for tests: the denokv engine (the native module of npm
 * `@deno/kv`, pinned in this folder's deno.json) behind the protocol Deno
 * Deploy's KV is reached through — the metadata exchange at `POST /` and the
 * data path at `/v2/snapshot_read`, `/v2/atomic_write` and `/v2/watch`,
 * over HTTP/2 without TLS (Deno's KV client speaks h2c to `http://`).
 *
 * It runs as a process of its own (its native module loads through a
 * node_modules folder this deno.json makes) and prints one JSON line with
 * its two addresses: `url`, for `Deno.openKv(url)`, and `control`, an
 * HTTP/1 server the test steers it through:
 *
 * - `POST /latency {"token"?, "ms"}`: every call made with that access
 *   token (or, without one, any token not named) waits `ms` first — so
 *   instances given different `DENO_KV_ACCESS_TOKEN`s sit in different
 *   "regions". Eventual reads go to an endpoint of their own that waits
 *   `eventualMs` (as a replica near the instance would).
 * - `POST /fault {"mode": "none"|"refuse"|"hang"|"500", "token"?}`: refuse
 *   closes the listener (connections are refused until cleared), hang holds
 *   calls until the fault is cleared, 500 answers them with a 500.
 * - `GET /calls`: calls counted by kind and by token; `POST /calls/reset`.
 *
 * A test fixture: kvgate never ships or loads it.
 *
 * @module
 */
import { createRequire } from "node:module";

interface Napi {
  open(path: string, inMemory: boolean, debug: boolean): number;
  snapshotRead(db: number, bytes: Uint8Array, debug: boolean): Promise<Uint8Array<ArrayBuffer>>;
  atomicWrite(db: number, bytes: Uint8Array, debug: boolean): Promise<Uint8Array<ArrayBuffer>>;
  startWatch(db: number, bytes: Uint8Array, debug: boolean): Promise<number>;
  dequeueNextWatchMessage(db: number, id: number, debug: boolean): Promise<Uint8Array | undefined>;
  endWatch(db: number, id: number, debug: boolean): void;
}

const napi = createRequire(import.meta.url)("@deno/kv-linux-x64-gnu") as Napi;
const db = napi.open("", true, false);
const DATABASE_ID = crypto.randomUUID();
const DATA_TOKEN_PREFIX = "data-path:";

type FaultMode = "none" | "refuse" | "hang" | "500";
const latencyByToken = new Map<string, number>();
let defaultLatencyMs = 0;
let eventualMs = 0;
let fault: { mode: FaultMode; token?: string } = { mode: "none" };
let faultCleared = Promise.withResolvers<void>();
const calls = {
  total: 0,
  byKind: {} as Record<string, number>,
  byToken: {} as Record<string, number>,
  /** By kind and the first segment of the first key the call names (`atomic_write:slots`). */
  byKey: {} as Record<string, number>,
};

const LATIN1 = new TextDecoder("latin1");

/**
 * The first segment of the first key in a call's protobuf bytes: a key's
 * string segment is encoded 0x02, its UTF-8 bytes, 0x00 (FoundationDB's
 * tuple layer, which Deno KV uses). For counting only.
 */
function firstKeySegment(bytes: Uint8Array): string {
  // deno-lint-ignore no-control-regex -- the tuple layer's type byte and terminator
  return /\x02([A-Za-z_]{2,})\x00/.exec(LATIN1.decode(bytes))?.[1] ?? "?";
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The access token a call was made with (the data path's token names it). */
function accessToken(req: Request): string | undefined {
  const auth = req.headers.get("authorization") ?? "";
  if (!auth.startsWith("Bearer ")) return undefined;
  const token = auth.slice(7);
  return token.startsWith(DATA_TOKEN_PREFIX) ? token.slice(DATA_TOKEN_PREFIX.length) : token;
}

/** Waits as the call's "region" does and applies the fault; a Response ends the call. */
async function arrive(
  token: string,
  kind: string,
  eventual: boolean,
  bytes?: Uint8Array,
): Promise<Response | null> {
  calls.total++;
  if (bytes) {
    const label = `${kind}:${firstKeySegment(bytes)}`;
    calls.byKey[label] = (calls.byKey[label] ?? 0) + 1;
  }
  calls.byKind[kind] = (calls.byKind[kind] ?? 0) + 1;
  calls.byToken[token] = (calls.byToken[token] ?? 0) + 1;
  const ms = eventual ? eventualMs : latencyByToken.get(token) ?? defaultLatencyMs;
  if (ms > 0) await sleep(ms);
  while (fault.mode !== "none" && (fault.token === undefined || fault.token === token)) {
    if (fault.mode === "500") return new Response("injected fault", { status: 500 });
    await faultCleared.promise;
  }
  return null;
}

function metadata(req: Request, token: string, body: { supportedVersions?: number[] }) {
  const versions = body.supportedVersions ?? [1];
  const version = [3, 2].find((v) => versions.includes(v));
  if (!version) return new Response("no common protocol version", { status: 400 });
  const base = new URL(req.url).origin;
  return Response.json({
    version,
    databaseId: DATABASE_ID,
    endpoints: [
      { url: `${base}/v2`, consistency: "strong" },
      { url: `${base}/eventual/v2`, consistency: "eventual" },
    ],
    token: DATA_TOKEN_PREFIX + token,
    expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
  });
}

function watch(bytes: Uint8Array): Response {
  let id: number | undefined;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      id ??= await napi.startWatch(db, bytes, false);
      const message = await napi.dequeueNextWatchMessage(db, id, false);
      if (message === undefined) return controller.close();
      const framed = new Uint8Array(4 + message.length);
      new DataView(framed.buffer).setInt32(0, message.length, true);
      framed.set(message, 4);
      controller.enqueue(framed);
    },
    cancel() {
      if (id !== undefined) napi.endWatch(db, id, false);
    },
  });
  return new Response(stream, { headers: { "content-type": "application/octet-stream" } });
}

async function dataServer(req: Request): Promise<Response> {
  const token = accessToken(req);
  if (req.method !== "POST" || token === undefined) {
    return new Response("POST with a Bearer token", { status: 401 });
  }
  const path = new URL(req.url).pathname;
  const eventual = path.startsWith("/eventual/");
  const kind = path === "/" ? "metadata" : path.slice(path.lastIndexOf("/") + 1);
  if (kind === "metadata") {
    return await arrive(token, kind, eventual) ??
      metadata(req, token, await req.json().catch(() => ({})));
  }
  const bytes = new Uint8Array(await req.arrayBuffer());
  const early = await arrive(token, kind, eventual, bytes);
  if (early) return early;
  const protobuf = { "content-type": "application/x-protobuf" };
  switch (kind) {
    case "snapshot_read":
      return new Response(await napi.snapshotRead(db, bytes, false), { headers: protobuf });
    case "atomic_write":
      return new Response(await napi.atomicWrite(db, bytes, false), { headers: protobuf });
    case "watch":
      return watch(bytes);
  }
  return new Response("not found", { status: 404 });
}

let dataPort = 0;
let data: Deno.HttpServer | undefined;
function listen(): Promise<void> {
  const ready = Promise.withResolvers<void>();
  data = Deno.serve({
    hostname: "127.0.0.1",
    port: dataPort,
    onListen: (addr) => {
      dataPort = addr.port;
      ready.resolve();
    },
  }, dataServer);
  return ready.promise;
}

async function setFault(next: { mode: FaultMode; token?: string }) {
  const wasRefusing = fault.mode === "refuse";
  fault = next;
  if (next.mode === "refuse" && !wasRefusing) await data?.shutdown();
  if (next.mode !== "refuse" && wasRefusing) await listen();
  if (next.mode === "none") {
    faultCleared.resolve();
    faultCleared = Promise.withResolvers<void>();
  }
}

async function controlServer(req: Request): Promise<Response> {
  const path = new URL(req.url).pathname;
  const body = req.method === "POST" ? await req.json().catch(() => ({})) : {};
  if (path === "/latency") {
    if (typeof body.token === "string") latencyByToken.set(body.token, body.ms);
    else if (body.eventual) eventualMs = body.ms;
    else defaultLatencyMs = body.ms;
  } else if (path === "/fault") {
    await setFault({ mode: body.mode ?? "none", token: body.token });
  } else if (path === "/calls/reset") {
    calls.total = 0;
    calls.byKind = {};
    calls.byToken = {};
    calls.byKey = {};
  } else if (path !== "/calls") {
    return new Response("not found", { status: 404 });
  }
  return Response.json(calls);
}

await listen();
const control = Promise.withResolvers<number>();
Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen: (a) => control.resolve(a.port) },
  controlServer,
);
console.log(JSON.stringify({
  event: "kv_connect",
  url: `http://127.0.0.1:${dataPort}`,
  control: `http://127.0.0.1:${await control.promise}`,
}));
