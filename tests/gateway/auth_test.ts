import { assertEquals } from "../support/assert.ts";
import { timingSafeEqual } from "../../gateway/auth.ts";

Deno.test("timingSafeEqual() accepts only the exact password", () => {
  const password = "correct horse battery staple";
  assertEquals(timingSafeEqual(password, password), true);
  assertEquals(timingSafeEqual("correct horse battery stapl", password), false, "a prefix");
  assertEquals(timingSafeEqual(password + "!", password), false, "longer");
  assertEquals(timingSafeEqual("", password), false, "empty");
  assertEquals(timingSafeEqual("Correct horse battery staple", password), false, "case");
  assertEquals(timingSafeEqual("pässwörd", "pässwörd"), true, "non-ASCII");
  assertEquals(timingSafeEqual("passwörd", "pässword"), false);
  // A NUL past the end must not pass for a missing character.
  assertEquals(timingSafeEqual("ab", "ab\0"), false);
});
