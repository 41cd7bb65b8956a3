import assert from "node:assert/strict";
import {
  estimateTokens,
  SseUsageMeter,
  usageFromJson,
  usageSplitFromJson,
} from "../../providers/mod.ts";
import { budgetDay, parseDayStart } from "../../limiter/mod.ts";

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

/** Feeds `text` to a meter in 7-byte pieces (events split across chunks). */
function metered(text: string): SseUsageMeter {
  const m = new SseUsageMeter();
  for (let i = 0; i < text.length; i += 7) m.push(enc.encode(text.slice(i, i + 7)));
  return m;
}

Deno.test("usage: cached input is counted apart and never left out — OpenAI chat, JSON and stream", () => {
  const usage =
    '"usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,"prompt_tokens_details":{"cached_tokens":80}}';
  assert.deepEqual(usageSplitFromJson(`{"choices":[],${usage}}`), {
    input: 20,
    output: 20,
    cachedInput: 80,
  });
  assert.equal(usageFromJson(`{"choices":[],${usage}}`), 120);
  const m = metered(
    `data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: {"choices":[],${usage}}\n\ndata: [DONE]\n\n`,
  );
  assert.equal(m.tokens, 120);
  assert.deepEqual(m.split, { input: 20, output: 20, cachedInput: 80 });
});

Deno.test("usage: the Responses API — JSON, and its streamed response.completed event", () => {
  const usage =
    '"usage":{"input_tokens":50,"input_tokens_details":{"cached_tokens":30},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":59}';
  assert.deepEqual(usageSplitFromJson(`{"object":"response","output":[],${usage}}`), {
    input: 20,
    output: 9,
    cachedInput: 30,
  });
  assert.equal(usageFromJson(`{"object":"response",${usage}}`), 59);
  const m = metered(
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}\n\n' +
      `event: response.completed\ndata: {"type":"response.completed","response":{"id":"r","status":"completed",${usage}}}\n\n`,
  );
  assert.equal(m.tokens, 59);
  assert.deepEqual(m.split, { input: 20, output: 9, cachedInput: 30 });
});

Deno.test("usage: Anthropic's cache reads and writes — JSON, and a stream split between message_start and message_delta", () => {
  const json =
    '{"type":"message","usage":{"input_tokens":10,"cache_creation_input_tokens":200,"cache_read_input_tokens":1000,"output_tokens":15}}';
  assert.equal(usageFromJson(json), 1225, "every token processed counts toward a budget");
  assert.deepEqual(usageSplitFromJson(json), { input: 210, output: 15, cachedInput: 1000 });
  const m = metered(
    'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":10,"cache_creation_input_tokens":200,"cache_read_input_tokens":1000,"output_tokens":1}}}\n\n' +
      'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}\n\n' +
      'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n',
  );
  assert.equal(m.tokens, 1225);
  assert.deepEqual(m.split, { input: 210, output: 15, cachedInput: 1000 });
});

Deno.test("usage: Gemini's cached content tokens", () => {
  const json =
    '{"candidates":[],"usageMetadata":{"promptTokenCount":40,"cachedContentTokenCount":25,"candidatesTokenCount":6,"totalTokenCount":46}}';
  assert.equal(usageFromJson(json), 46);
  assert.deepEqual(usageSplitFromJson(json), { input: 15, output: 6, cachedInput: 25 });
  const m = metered(`data: ${json}\n\n`);
  assert.deepEqual(m.split, { input: 15, output: 6, cachedInput: 25 });
});
