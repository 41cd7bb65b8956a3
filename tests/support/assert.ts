/**
 * Minimal assertions (JSR's @std/assert cannot be reached from CI).
 *
 * @module
 */

/** Thrown when an assertion fails. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

/** Asserts that `cond` is truthy. */
export function assert(cond: unknown, message = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(message);
}

function equal(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((k) =>
    equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
  );
}

/** Asserts deep equality of plain values. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  if (!equal(actual, expected)) {
    throw new AssertionError(
      `${message ? message + ": " : ""}expected ${JSON.stringify(expected)}, got ${
        JSON.stringify(actual)
      }`,
    );
  }
}

/** Asserts `lo <= value <= hi`. */
export function assertBetween(value: number, lo: number, hi: number, message = "value"): void {
  if (!(value >= lo && value <= hi)) {
    throw new AssertionError(`${message}: expected ${lo}..${hi}, got ${value}`);
  }
}

/** Asserts that `fn` throws an error of `type` whose message includes `includes`. */
export function assertThrows(
  fn: () => unknown,
  type: new (...args: never[]) => Error,
  includes?: string,
): Error {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof type)) throw new AssertionError(`expected ${type.name}, got ${e}`);
    if (includes && !e.message.includes(includes)) {
      throw new AssertionError(`expected message to include "${includes}", got "${e.message}"`);
    }
    return e;
  }
  throw new AssertionError(`expected ${type.name} to be thrown`);
}
