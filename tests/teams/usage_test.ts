import assert from "node:assert/strict";
import {
  budgetDay,
  estimateTokens,
  parseDayStart,
  SseUsageMeter,
  usageFromJson,
} from "../../teams/mod.ts";

const enc = new TextEncoder();

Deno.test("usage: OpenAI, Anthropic and Gemini JSON answers report their tokens; others none", () => {
  assert.equal(
    usageFromJson('{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'),
    7,
  );
  assert.equal(usageFromJson('{"usage":{"input_tokens":10,"output_tokens":5}}'), 15);
  assert.equal(usageFromJson('{"usageMetadata":{"totalTokenCount":9}}'), 9);
  assert.equal(usageFromJson('{"choices":[]}'), undefined);
  assert.equal(usageFromJson("not json, but says usage"), undefined);
  assert.equal(estimateTokens(10, 11), 6);
});

Deno.test("usage: an OpenAI stream's final usage chunk counts, even split across chunks", () => {
  const m = new SseUsageMeter();
  const text =
    'data: {"choices":[{"delta":{}}]}\n\ndata: {"choices":[],"usage":{"total_tokens":42}}\n\ndata: [DONE]\n\n';
  for (let i = 0; i < text.length; i += 7) m.push(enc.encode(text.slice(i, i + 7)));
  assert.equal(m.tokens, 42);
});

Deno.test("usage: an Anthropic stream adds message_start input and message_delta output", () => {
  const m = new SseUsageMeter();
  m.push(enc.encode(
    'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}\n\n' +
      'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n',
  ));
  assert.equal(m.tokens, 40);
});

Deno.test("budget day: starts at UTC midnight, or at dayStartsAt", () => {
  const noon = Date.UTC(2026, 10, 29, 12, 0, 0);
  assert.deepEqual(budgetDay(noon, 0), { day: "2026-11-29", resetsAt: Date.UTC(2026, 10, 30) });
  const eight = parseDayStart("08:00");
  const early = Date.UTC(2026, 10, 29, 7, 0, 0);
  assert.deepEqual(budgetDay(early, eight), {
    day: "2026-11-28",
    resetsAt: Date.UTC(2026, 10, 29, 8, 0, 0),
  });
  assert.throws(() => parseDayStart("8am"), /dayStartsAt must be "HH:MM".*got "8am"/);
});
