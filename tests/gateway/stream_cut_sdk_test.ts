/**
 * An answer cut short never looks whole to the real clients: a stream still
 * open when a drain ends raises an error in the OpenAI SDK, LangChain and
 * the Anthropic SDK (each can retry it), and one that finishes inside the
 * drain completes normally.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { ChatOpenAI } from "@langchain/openai";
import { PASSWORD, startMocked } from "../support/harness.ts";

/** A mock whose answers stream 300 chunks 50 ms apart (15 s); a model `chunks-N` asks for N. */
function setup() {
  return startMocked({ chunks: 300, chunkDelayMs: 50 }, (url) => ({
    settings: { drainMs: 1500 },
    services: {
      openai: { target: url, keys: ["sk-one"], rps: 100, burst: 100, maxConn: 10 },
      claude: { target: url, keys: ["sk-one"], rps: 100, burst: 100, maxConn: 10 },
    },
  }));
}

type Clients = {
  openai: (model: string) => AsyncIterable<string>;
  langchain: (model: string) => AsyncIterable<string>;
  anthropic: (model: string) => AsyncIterable<string>;
};

function clients(url: string): Clients {
  const openai = new OpenAI({ baseURL: `${url}/openai/v1`, apiKey: PASSWORD, maxRetries: 0 });
  const anthropic = new Anthropic({ baseURL: `${url}/claude`, apiKey: PASSWORD, maxRetries: 0 });
  return {
    async *openai(model) {
      const stream = await openai.chat.completions.create({
        model,
        messages: [{ role: "user", content: "hi" }],
        stream: true,
      });
      for await (const chunk of stream) yield chunk.choices[0]?.delta?.content ?? "";
    },
    async *langchain(model) {
      const llm = new ChatOpenAI({
        model,
        apiKey: PASSWORD,
        configuration: { baseURL: `${url}/openai/v1` },
        maxRetries: 0,
      });
      for await (const chunk of await llm.stream("hi")) yield String(chunk.content);
    },
    async *anthropic(model) {
      const stream = anthropic.messages.stream({
        model,
        max_tokens: 16,
        messages: [{ role: "user", content: "hi" }],
      });
      for await (const ev of stream) {
        if (ev.type === "content_block_delta" && ev.delta.type === "text_delta") {
          yield ev.delta.text;
        }
      }
    },
  };
}

/** Reads `stream` to its end: the text, and the error it raised if it raised one. */
async function read(stream: AsyncIterable<string>, started: () => void) {
  let text = "";
  try {
    for await (const part of stream) {
      text += part;
      started();
    }
    return { text };
  } catch (error) {
    return { text, error: error as Error };
  }
}

for (const sdk of ["openai", "langchain", "anthropic"] as const) {
  Deno.test(`${sdk}: a stream still open at the end of the drain raises an error (gateway_closing); one that ends inside the drain completes`, async () => {
    await using t = await setup();
    const client = clients(t.gw.url)[sdk];
    let longBegan!: () => void, shortBegan!: () => void;
    const longBegun = new Promise<void>((r) => longBegan = r);
    const shortBegun = new Promise<void>((r) => shortBegan = r);
    const long = read(client("mock-model"), () => longBegan());
    const short = read(client("chunks-12"), () => shortBegan());
    // Both are streaming when the drain starts: 12 chunks 50 ms apart end inside its 1.5 s.
    await Promise.all([longBegun, shortBegun]);
    const drained = t.gw.gateway.drain(3000);
    const [cut, whole] = await Promise.all([long, short]);
    await drained;
    assert.ok(cut.error, `${sdk} raised no error for a stream cut short: ${cut.text.length} chars`);
    assert.match(
      `${cut.error.message} ${JSON.stringify(cut.error)}`,
      /shutting down|gateway_closing|overloaded/,
    );
    assert.ok(cut.text.startsWith("part0 "), "what came before the cut was passed on");
    assert.equal(whole.error, undefined, `${sdk}: ${whole.error?.message}`);
    assert.equal(whole.text, Array.from({ length: 12 }, (_, i) => `part${i} `).join(""));
  });
}
