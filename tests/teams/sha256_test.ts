import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { sha256Hex } from "../../teams/sha256.ts";

Deno.test("sha256Hex agrees with node:crypto on known vectors, every length across block edges, and non-ASCII", () => {
  assert.equal(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert.equal(
    sha256Hex("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  const reference = (s: string) => createHash("sha256").update(s).digest("hex");
  for (let n = 0; n < 300; n++) {
    const s = Array.from({ length: n }, (_, i) => String.fromCharCode(33 + ((i * 7 + n) % 90)))
      .join("");
    assert.equal(sha256Hex(s), reference(s), `length ${n}`);
  }
  for (const s of ["kvt_ünïcødé-🔑", "ключ-команды", "\u0000\uffff"]) {
    assert.equal(sha256Hex(s), reference(s));
  }
});
