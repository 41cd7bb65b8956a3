import assert from "node:assert/strict";
import { requestId } from "../../lib/request_id.ts";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

function decodeTime(id: string): number {
  let ms = 0;
  for (const c of id.slice(0, 10)) ms = ms * 32 + ALPHABET.indexOf(c);
  return ms;
}

Deno.test("requestId() is a ULID whose time part is the given millisecond", () => {
  const now = Date.UTC(2026, 10, 26, 12, 0, 0, 123);
  const id = requestId(now);
  assert(/^[0-9A-HJKMNP-TV-Z]{26}$/.test(id), id);
  assert.deepEqual(decodeTime(id), now);
  assert.deepEqual(requestId(0).slice(0, 10), "0000000000");
  assert.deepEqual(decodeTime(requestId(2 ** 48 - 1)), 2 ** 48 - 1);
});

Deno.test("requestId() ids sort by time and never repeat within a millisecond", () => {
  const now = Date.now();
  const ids = new Set<string>();
  for (let i = 0; i < 5000; i++) ids.add(requestId(now));
  assert.deepEqual(ids.size, 5000);
  assert(requestId(now) < requestId(now + 1));
  assert(requestId(now + 1) < requestId(now + 32), "a carry into the next digit still sorts");
});

Deno.test("requestId() refuses a time a ULID cannot hold", () => {
  for (const bad of [-1, 2 ** 48, 1.5, NaN]) assert.throws(() => requestId(bad), RangeError);
});
