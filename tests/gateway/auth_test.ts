import { assertEquals } from "../support/assert.ts";
import { clientCredential, timingSafeEqual } from "../../gateway/auth.ts";

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

Deno.test("clientCredential() reads Bearer tokens, x-api-key, and on gemini x-goog-api-key and ?key=", () => {
  const head = (
    authorization: string | null,
    apiKey: string | null = null,
    googApiKey: string | null = null,
  ) => ({
    authorization,
    apiKey,
    googApiKey,
  });
  assertEquals(clientCredential(head("Bearer pw"), "", "openai"), "pw");
  assertEquals(clientCredential(head("  bearer \t pw  "), "", "openai"), "pw", "any case, spaces");
  assertEquals(clientCredential(head("BEARER a b"), "", "openai"), "a b");
  for (const bad of ["Bearer", "Bearer   ", "Bearerpw", "Basic cHc=", ""]) {
    assertEquals(clientCredential(head(bad), "", "openai"), undefined, JSON.stringify(bad));
  }
  assertEquals(clientCredential(head("Basic x", " pw2 "), "", "anthropic"), "pw2");
  assertEquals(clientCredential(head(null), "?key=pw3", "openai"), undefined, "?key= is gemini's");
  assertEquals(clientCredential(head(null), "?alt=sse&key=pw3", "gemini", true), "pw3");
  assertEquals(
    clientCredential(head(null), "?alt=sse&key=pw3", "gemini"),
    undefined,
    "?key= is opt-in",
  );
  assertEquals(clientCredential(head(null, null, " pw4 "), "", "gemini"), "pw4");
});
