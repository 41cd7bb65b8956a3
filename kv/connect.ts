import type { Clock } from "../lib/mod.ts";
import { isTransientKvError, KvUnavailableError, withTimeout } from "./call.ts";
import { probeKey } from "./keys.ts";
import { type KvLocation, KvPathError, prepareKvFile } from "./path.ts";
import { KvStatus, type KvStatusEvent } from "./status.ts";

/** Options for {@linkcode connectKv}. */
export interface ConnectKvOptions {
  clock: Clock;
  /** Longest one look at KV may take, in ms (the gateway's kvTimeoutMs). Default 2000. */
  timeoutMs?: number;
  /** How long start-up waits for KV before serving without it, in ms. Default 2000. */
  startWaitMs?: number;
  /** Longest wait between two attempts while KV is down, in ms. Default 1000. */
  probeMs?: number;
  /** Opens a database. Default: `Deno.openKv`. */
  open?: (path: string | undefined) => Promise<Deno.Kv>;
  /**
   * Whether a database can be opened at all. Default: whether `Deno.openKv`
   * exists (on Deno Deploy it does only when a database is attached). When
   * not, nothing is tried and nothing is logged: the caller says it once.
   */
  available?: boolean;
  /** Called once, when the database has first opened (main drops its write permission here). */
  opened?: () => void;
  log?: (event: KvStatusEvent, detail: Record<string, unknown>) => void;
}

/** A KV that may not have opened yet, and whether it answers. */
export interface KvConnection {
  /**
   * Stands for the database at once: until it has opened, and while
   * `status` says KV is down, calls through {@linkcode kvCall} fail at once.
   */
  kv: Deno.Kv;
  status: KvStatus;
  close(): void;
}

/**
 * A database handle that forwards to the real one once it is open. Before
 * that every method throws {@linkcode KvUnavailableError}, which callers
 * already treat as "KV is down".
 */
function deferredKv(current: () => Deno.Kv | undefined): Deno.Kv {
  return new Proxy({} as Deno.Kv, {
    get(_, prop) {
      const kv = current();
      if (kv === undefined) {
        if (prop === "close") return () => {};
        return () => {
          throw new KvUnavailableError("KV unavailable: not connected yet");
        };
      }
      const value = Reflect.get(kv, prop, kv);
      return typeof value === "function" ? value.bind(kv) : value;
    },
  });
}

/** What `Deno.openKv` is given for a location (undefined: the platform's default database). */
function openPath(location: KvLocation): string | undefined {
  if (location.kind === "file") return location.path;
  if (location.kind === "remote") return location.url;
  return location.kind === "memory" ? ":memory:" : undefined;
}

/**
 * The first open of a local database: a file that is not a database, or
 * that SQLite refuses for good, stops start-up; lock contention and slow
 * disks are waited out in the background.
 */
async function openLocal(path: string, open: () => Promise<Deno.Kv>): Promise<void> {
  try {
    await open();
  } catch (e) {
    if (!isTransientKvError(e)) throw new KvPathError(path, String(e));
  }
}

/**
 * Opens KV without ever keeping the gateway from serving. A file path is
 * checked first (its directory made, a path that cannot be used refused
 * with a {@linkcode KvPathError}); then the database is opened and read
 * once. What does not answer within `startWaitMs` (a KV Connect server that
 * refuses, hangs or answers errors; a file locked by another process) is
 * tried again in the background every `probeMs` until it answers, while the
 * gateway runs degraded: `status` logs `kv_degraded`, then `kv_recovered`.
 *
 * @throws {KvPathError} for a path that cannot be used, or a file that does
 * not open as a database.
 */
export async function connectKv(
  location: KvLocation,
  options: ConnectKvOptions,
): Promise<KvConnection> {
  const { clock, timeoutMs = 2000, startWaitMs = 2000 } = options;
  if (!(options.available ?? (options.open !== undefined || typeof Deno.openKv === "function"))) {
    return noDatabase(clock);
  }
  const open = options.open ?? ((path) => Deno.openKv(path));
  const path = openPath(location);
  if (location.kind === "file") await prepareKvFile(location.path);

  let real: Deno.Kv | undefined;
  let opening: Promise<Deno.Kv> | undefined;
  let closed = false;
  /** One open at a time; its database is kept whenever it arrives, even after its probe gave up. */
  const openOnce = (): Promise<Deno.Kv> => {
    opening ??= open(path).then((kv) => {
      if (closed) kv.close();
      else {
        real = kv;
        options.opened?.();
      }
      return kv;
    }).finally(() => opening = undefined);
    return opening;
  };
  const probe = async () => {
    // An open that hangs (a server that never answers) is left to finish in
    // the background; the next probe joins it rather than opening twice.
    const kv = real ?? await withTimeout(clock, openOnce(), timeoutMs);
    await withTimeout(clock, kv.get(probeKey()), timeoutMs);
  };

  if (location.kind === "file" || location.kind === "memory") await openLocal(path!, openOnce);
  const status = new KvStatus({
    clock,
    probe,
    probeMs: options.probeMs,
    up: false,
    log: options.log,
  });
  if (!await status.waitUp(startWaitMs)) status.fail(status.lastError || "no answer yet");
  return {
    kv: deferredKv(() => real),
    status,
    close() {
      closed = true;
      status.close();
      real?.close();
    },
  };
}

/**
 * No database can be opened (none attached to the app): a KV that fails
 * every call at once, and a status that is down without a word — no stream
 * of `kv_degraded` for something that will not come back by itself — and
 * that looks again only once a minute.
 */
function noDatabase(clock: Clock): KvConnection {
  const status = new KvStatus({
    clock,
    probe: () => Promise.reject(new Error("no KV database is attached")),
    probeMs: 60_000,
    up: false,
  });
  status.fail("no KV database is attached");
  return { kv: deferredKv(() => undefined), status, close: () => status.close() };
}
