import assert from "node:assert/strict";
import { clientCredential, timingSafeEqual } from "../../gateway/stages/auth.ts";

Deno.test("timingSafeEqual() accepts only the exact password", () => {
  const password = "correct horse battery staple";
  assert.deepEqual(timingSafeEqual(password, password), true);
  assert.deepEqual(timingSafeEqual("correct horse battery stapl", password), false, "a prefix");
  assert.deepEqual(timingSafeEqual(password + "!", password), false, "longer");
  assert.deepEqual(timingSafeEqual("", password), false, "empty");
  assert.deepEqual(timingSafeEqual("Correct horse battery staple", password), false, "case");
  assert.deepEqual(timingSafeEqual("pässwörd", "pässwörd"), true, "non-ASCII");
  assert.deepEqual(timingSafeEqual("passwörd", "pässword"), false);
  // A NUL past the end must not pass for a missing character.
  assert.deepEqual(timingSafeEqual("ab", "ab\0"), false);
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
  assert.deepEqual(clientCredential(head("Bearer pw"), "", "openai"), "pw");
  assert.deepEqual(
    clientCredential(head("  bearer \t pw  "), "", "openai"),
    "pw",
    "any case, spaces",
  );
  assert.deepEqual(clientCredential(head("BEARER a b"), "", "openai"), "a b");
  for (const bad of ["Bearer", "Bearer   ", "Bearerpw", "Basic cHc=", ""]) {
    assert.deepEqual(clientCredential(head(bad), "", "openai"), undefined, JSON.stringify(bad));
  }
  assert.deepEqual(clientCredential(head("Basic x", " pw2 "), "", "anthropic"), "pw2");
  assert.deepEqual(
    clientCredential(head(null), "?key=pw3", "openai"),
    undefined,
    "?key= is gemini's",
  );
  assert.deepEqual(clientCredential(head(null), "?alt=sse&key=pw3", "gemini", true), "pw3");
  assert.deepEqual(
    clientCredential(head(null), "?alt=sse&key=pw3", "gemini"),
    undefined,
    "?key= is opt-in",
  );
  assert.deepEqual(clientCredential(head(null, null, " pw4 "), "", "gemini"), "pw4");
});
