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
import { startMockUpstream } from "../support/mock_upstream.ts";
import { startGatewayProcess, stopProcesses } from "../support/process.ts";

/** An observed relay (a native stream is cut at exit: see the process test below). */
const observed = {
  keys: ["sk-one"],
  rps: 100,
  burst: 100,
  maxConn: 10,
  streamRelay: "observe" as const,
};

/** A mock whose answers stream 300 chunks 50 ms apart (15 s); a model `chunks-N` asks for N. */
function setup() {
  return startMocked({ chunks: 300, chunkDelayMs: 50 }, (url) => ({
    settings: { drainMs: 1500 },
    services: {
      openai: { ...observed, target: url },
      claude: { ...observed, target: url },
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

Deno.test("native streams (the default relay) open at SIGINT: each SDK raises an error when the process exits, none sees a clean end", async () => {
  const mock = await startMockUpstream({ chunks: 300, chunkDelayMs: 50 });
  const dir = await Deno.makeTempDir();
  const native = { target: mock.url, rps: 100, burst: 100, maxConn: 10 };
  const gw = await startGatewayProcess({
    kvPath: `${dir}/kv.sqlite3`,
    config: {
      drainMs: 1000,
      services: { openai: native, claude: { ...native, style: "anthropic" } },
    },
    env: { OPENAI_API_KEYS: "sk-one", CLAUDE_API_KEYS: "sk-one" },
  });
  try {
    const sdks = clients(gw.url);
    const began: Promise<void>[] = [];
    const reads = (["openai", "langchain", "anthropic"] as const).map((sdk) => {
      let mark!: () => void;
      began.push(new Promise<void>((r) => mark = r));
      return read(sdks[sdk](`chunks-300`), () => mark());
    });
    await Promise.all(began);
    gw.child.kill("SIGINT");
    const [results, status] = await Promise.all([Promise.all(reads), gw.child.status]);
    assert.equal(status.code, 0);
    for (const [i, sdk] of ["openai", "langchain", "anthropic"].entries()) {
      assert.ok(results[i].error, `${sdk} raised no error for a native stream cut at exit`);
      assert.ok(
        results[i].text.startsWith("part0 "),
        `${sdk}: what came before the cut was passed on`,
      );
    }
    await gw.drained;
    const lines = gw.stdout.events().filter((l) => l.status === 200);
    assert.deepEqual(lines.map((l) => [l.relay, l.outcome]), Array(3).fill(["native", "drained"]));
  } finally {
    await stopProcesses([gw]);
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});
