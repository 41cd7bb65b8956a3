/** Where KV lives, as KV_PATH says. */
export type KvLocation =
  | { kind: "deploy" }
  | { kind: "memory" }
  | { kind: "file"; path: string }
  | { kind: "remote"; url: string };

/**
 * KV_PATH as it may be shown in a log or an error: a URL's user and
 * password, should it carry any, are replaced by `***`.
 */
export function displayKvPath(value: string): string {
  return value.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/@]*@/, "$1***@");
}

/** A KV_PATH that cannot be used; the message names KV_PATH, the value and the reason. */
export class KvPathError extends Error {
  override name = "KvPathError";

  constructor(value: string, reason: string) {
    super(`KV_PATH ${JSON.stringify(displayKvPath(value))} cannot be used: ${reason}`);
  }
}

/**
 * Reads a KV_PATH value: unset (the platform's KV on Deno Deploy),
 * `:memory:`, an `http(s)` URL of a KV Connect server, or a file path.
 *
 * @throws {KvPathError} for a malformed URL, another scheme, or a URL without
 * `DENO_KV_ACCESS_TOKEN` in the environment.
 */
export function parseKvPath(
  value: string | undefined,
  env: (name: string) => string | undefined,
): KvLocation {
  if (value === undefined) return { kind: "deploy" };
  if (value === ":memory:") return { kind: "memory" };
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(value)?.[1]?.toLowerCase();
  if (scheme === undefined) return { kind: "file", path: value };
  if (scheme !== "http" && scheme !== "https") {
    throw new KvPathError(value, `only http(s) URLs (KV Connect) or file paths are supported`);
  }
  if (!URL.canParse(value) || new URL(value).hostname === "") {
    throw new KvPathError(value, "it is not a valid URL");
  }
  if (!env("DENO_KV_ACCESS_TOKEN")) {
    throw new KvPathError(
      value,
      "a KV Connect URL needs DENO_KV_ACCESS_TOKEN set to the server's access token",
    );
  }
  return { kind: "remote", url: value };
}

/** File-system calls of {@linkcode prepareKvFile}; injectable for tests. */
export interface KvFileSystem {
  mkdir(path: string): Promise<void>;
  stat(path: string): Promise<Deno.FileInfo>;
  /** Opens the file for writing, creating it if it is missing, and closes it again. */
  touch(path: string): Promise<void>;
}

const realFs: KvFileSystem = {
  mkdir: (path) => Deno.mkdir(path, { recursive: true }),
  stat: (path) => Deno.stat(path),
  async touch(path) {
    const f = await Deno.open(path, { write: true, create: true });
    f.close();
  },
};

/** Turns a file-system error into the reason a person can act on. */
export function describeFsError(e: unknown): string {
  const name = e instanceof Error ? e.name : "";
  const message = e instanceof Error ? e.message : String(e);
  if (name === "NotCapable") {
    return "Deno does not let this process write there (`deno task start` allows writing" +
      " anywhere but the special places Deno guards, such as /proc and /dev)";
  }
  if (name === "PermissionDenied" || /permission denied|os error 13/i.test(message)) {
    return "permission denied";
  }
  if (/read-only file system|os error 30/i.test(message)) return "the file system is read-only";
  // mkdir meets a file where a directory should be: EEXIST; open or stat: ENOTDIR.
  if (name === "NotADirectory" || name === "AlreadyExists" || /os error (17|20)\b/.test(message)) {
    return "a part of the path is a file, not a directory";
  }
  if (name === "IsADirectory" || /os error 21/.test(message)) return "it is a directory";
  return message;
}

/**
 * Makes sure a KV file can be opened for writing before Deno KV opens it:
 * creates its directory (and parents) when missing, and refuses a directory,
 * a path through a file, a read-only file system or a place this process may
 * not write, each with a reason a person can act on.
 *
 * @throws {KvPathError}
 */
export async function prepareKvFile(path: string, fs: KvFileSystem = realFs): Promise<void> {
  const slash = path.lastIndexOf("/");
  const dir = slash > 0 ? path.slice(0, slash) : slash === 0 ? "/" : "";
  try {
    if (dir !== "" && dir !== "/") await fs.mkdir(dir);
    const info = await fs.stat(path).catch((e) => {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    });
    if (info?.isDirectory) throw new KvPathError(path, "it is a directory");
    await fs.touch(path);
  } catch (e) {
    if (e instanceof KvPathError) throw e;
    throw new KvPathError(path, describeFsError(e));
  }
}

/**
 * What to say of where KV lives, once, at start: on Deno Deploy with no
 * database attached (`Deno.openKv` missing), and on Deploy with a file or
 * `:memory:` KV_PATH (each isolate its own store, so limits hold per
 * instance, not for the deployment). Undefined when there is nothing to say.
 */
export function kvWarning(
  location: KvLocation,
  onDeploy: boolean,
  openKvAvailable: boolean,
): string | undefined {
  if (location.kind === "deploy" && !openKvAvailable) {
    return "no KV database is attached to this app: limits, key health and teams hold per instance only, until one is. Attach one in the Deno Deploy dashboard (Databases → assign to this app).";
  }
  if (onDeploy && (location.kind === "file" || location.kind === "memory")) {
    return "KV_PATH is a file or :memory: on Deno Deploy: every instance keeps its own, so limits hold per instance, not for the deployment. Unset KV_PATH and assign a KV database to the app.";
  }
  return undefined;
}
