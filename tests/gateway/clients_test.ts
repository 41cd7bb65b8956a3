import assert from "node:assert/strict";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { ChatOpenAI } from "@langchain/openai";
import { PASSWORD, startMocked } from "../support/harness.ts";

function setup() {
  return startMocked({ keys: ["sk-one", "sk-two"] }, (url) => ({
    services: {
      openai: { target: url, keys: ["sk-one", "sk-two"], rps: 100, burst: 100, maxConn: 50 },
      claude: { target: url, keys: ["sk-one"], rps: 100, burst: 100, maxConn: 50 },
    },
  }));
}

Deno.test("OpenAI SDK: chat, streamed chat and models.list work through /openai/v1", async () => {
  await using t = await setup();
  const client = new OpenAI({ baseURL: `${t.gw.url}/openai/v1`, apiKey: PASSWORD, maxRetries: 0 });
  const chat = await client.chat.completions.create({
    model: "mock-model",
    messages: [{ role: "user", content: "hi" }],
  });
  assert.deepEqual(chat.choices[0].message.content, "Hello from mock");

  const stream = await client.chat.completions.create({
    model: "mock-model",
    messages: [{ role: "user", content: "hi" }],
    stream: true,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.deepEqual(text, "part0 part1 part2 ");

  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ["mock-model"]);
  // The upstream saw provider keys, never the gateway password.
  for (const r of t.mock.received) {
    assert(r.key === "sk-one" || r.key === "sk-two", `upstream saw key ${r.key}`);
    assert(!JSON.stringify([...r.headers]).includes(PASSWORD));
  }
});

Deno.test("LangChain ChatOpenAI: invoke and stream work through the gateway", async () => {
  await using t = await setup();
  const llm = new ChatOpenAI({
    model: "mock-model",
    apiKey: PASSWORD,
    configuration: { baseURL: `${t.gw.url}/openai/v1` },
    maxRetries: 0,
  });
  const answer = await llm.invoke("hi");
  assert.deepEqual(answer.content, "Hello from mock");
  let text = "";
  for await (const chunk of await llm.stream("hi")) text += chunk.content;
  assert.deepEqual(text, "part0 part1 part2 ");
});

Deno.test("Anthropic SDK: messages and streamed messages work through /claude", async () => {
  await using t = await setup();
  const client = new Anthropic({ baseURL: `${t.gw.url}/claude`, apiKey: PASSWORD, maxRetries: 0 });
  const msg = await client.messages.create({
    model: "claude-mock",
    max_tokens: 16,
    messages: [{ role: "user", content: "hi" }],
  });
  assert.deepEqual(msg.content[0].type === "text" ? msg.content[0].text : "", "Hello from mock");
  let text = "";
  const stream = client.messages.stream({
    model: "claude-mock",
    max_tokens: 16,
    messages: [{ role: "user", content: "hi" }],
  });
  for await (const ev of stream) {
    if (ev.type === "content_block_delta" && ev.delta.type === "text_delta") text += ev.delta.text;
  }
  assert.deepEqual(text, "part0 part1 part2 ");
  const seen = t.mock.received.filter((r) => r.path === "/v1/messages");
  assert.deepEqual(seen.length, 2);
  for (const r of seen) {
    assert.deepEqual(r.headers.get("x-api-key"), "sk-one");
    assert.deepEqual(r.headers.get("authorization"), null);
    assert(r.headers.get("anthropic-version"), "anthropic-version is forwarded");
  }
});
