/**
 * Wraps a Deno.Kv so that every call takes `latencyMs` longer and, while
 * `failing` is set, throws the transient error SQLite gives under
 * contention. Counts operations for the KV-ops-per-request figures.
 *
 * @module
 */

/** Controls of a wrapped KV. */
export interface KvFaults {
  latencyMs: number;
  failing: boolean;
  ops: number;
}

/** Returns a KV that behaves like `kv` with added latency (on `clock`, default the real one) and faults. */
export function faultyKv(
  kv: Deno.Kv,
  faults: KvFaults,
  clock: { setTimeout(fn: () => void, ms: number): unknown } = { setTimeout },
): Deno.Kv {
  const sleep = (ms: number) =>
    ms > 0 ? new Promise<void>((r) => clock.setTimeout(r, ms)) : Promise.resolve();
  const gate = async () => {
    faults.ops++;
    await sleep(faults.latencyMs);
    if (faults.failing) throw new Error("database is locked");
  };
  const wrapAtomic = (op: Deno.AtomicOperation): Deno.AtomicOperation => {
    const self: Deno.AtomicOperation = new Proxy(op, {
      get(target, prop) {
        if (prop === "commit") {
          return async () => {
            await gate();
            return target.commit();
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === "function"
          ? (...args: unknown[]) => {
            const r = v.apply(target, args);
            return r === target ? self : r;
          }
          : v;
      },
    });
    return self;
  };
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") {
        return () => wrapAtomic(target.atomic());
      }
      if (prop === "list") {
        return (selector: Deno.KvListSelector, options?: Deno.KvListOptions) => {
          const inner = target.list(selector, options);
          return (async function* () {
            await gate();
            yield* inner;
          })();
        };
      }
      const v = Reflect.get(target, prop, target);
      if (typeof v !== "function") return v;
      if (prop === "get" || prop === "set" || prop === "delete" || prop === "getMany") {
        return async (...args: unknown[]) => {
          await gate();
          return v.apply(target, args);
        };
      }
      return v.bind(target);
    },
  });
}
