/**
 * The V8 workarounds of the request path, in one place.
 *
 * When a full GC finds no live object of a hidden class, V8 drops the class
 * and deoptimizes every function compiled against it. The collection V8
 * runs after a few idle seconds finds no request in flight: the classes of
 * Request, Response, Headers, streams, URL and kvgate's request record went,
 * and with them about 100 functions of the request path, compiled again
 * (about 150 ms of CPU) when traffic came back. Keeping the last request's
 * objects alive until the next request replaces them keeps most of those
 * classes (measured with --trace-deopt after a 20 s idle: 89 functions
 * thrown away without this, 3-12 with it; see BENCHMARKS.md, runs O-S).
 *
 * What is kept holds no more than one request's memory. The URL kept is
 * parsed from a fixed address, so no request's path or query is held.
 *
 * @module
 */

/** Holds the objects whose hidden classes the request path needs to survive an idle GC. */
export class ShapeKeeper {
  #last: unknown[] | undefined;
  #exemplars: unknown[] | undefined;

  /**
   * Keeps the last relayed request's objects (its record, the answer, the
   * upstream body stream, the server's connection info) until the next
   * request replaces them; and, from the first request on, a URL like the
   * one `fetch` parses and drops, and a request body stream as it is before
   * it is read (after `req.bytes()`, reading `req.body` makes a new stream:
   * about 2 µs, so it is read once).
   */
  keep(
    record: unknown,
    response: Response,
    upstreamBody: unknown,
    info: unknown,
    req: Request,
  ): void {
    this.#last = [record, response, upstreamBody, info];
    this.#exemplars ??= [new URL("http://127.0.0.1/"), req.body];
  }
}
