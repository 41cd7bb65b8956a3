/**
 * A minimal Chrome DevTools Protocol client for the benchmarks' diagnostics
 * (bench/heap_growth.ts, bench/alloc_profile.ts): connects to a Deno process
 * started with `--inspect=127.0.0.1:<port>` and sends commands.
 *
 * @module
 */

/** A connected inspector session. */
export interface Inspector {
  /** Sends one command and resolves to its result. */
  send<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>;
  /** Calls `fn` with the params of every event named `method`. */
  on(method: string, fn: (params: Record<string, unknown>) => void): void;
  close(): void;
}

/** Connects to the inspector on `port` (127.0.0.1), retrying for up to 10 s while the process starts. */
export async function connectInspector(port: number): Promise<Inspector> {
  let url: string | undefined;
  for (let i = 0; i < 100 && url === undefined; i++) {
    try {
      // Bounded: a process still starting may accept the connection and not answer yet.
      const list = await (await fetch(`http://127.0.0.1:${port}/json/list`, {
        signal: AbortSignal.timeout(1000),
      })).json();
      url = list[0]?.webSocketDebuggerUrl;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  if (url === undefined) throw new Error(`no inspector on port ${port}`);
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`inspector on port ${port} did not open`)),
      5000,
    );
    ws.onopen = () => resolve(clearTimeout(timer));
    ws.onerror = (e) =>
      reject(new Error(`inspector on port ${port}: ${(e as ErrorEvent).message}`));
  });
  let nextId = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const listeners = new Map<string, (params: Record<string, unknown>) => void>();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.method) listeners.get(m.method)?.(m.params);
    const p = m.id !== undefined ? pending.get(m.id) : undefined;
    if (!p) return;
    pending.delete(m.id);
    if (m.error) p.reject(new Error(`${m.error.message} (${m.error.code})`));
    else p.resolve(m.result);
  };
  // A process that exits mid-command must not leave its caller waiting forever.
  ws.onclose = () => {
    for (const p of pending.values()) p.reject(new Error("inspector connection closed"));
    pending.clear();
  };
  return {
    send<T>(method: string, params: Record<string, unknown> = {}) {
      const id = ++nextId;
      ws.send(JSON.stringify({ id, method, params }));
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      });
    },
    on(method, fn) {
      listeners.set(method, fn);
    },
    close: () => ws.close(),
  };
}
