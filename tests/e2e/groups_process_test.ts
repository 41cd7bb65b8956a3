/**
 * Model groups over a real process started as the README says, with the
 * real clients: the OpenAI SDK and LangChain point their base URL at
 * `/<group>/v1`; a first target whose key the provider refuses is left
 * after its one 401 and never asked again, the second answers with its own
 * model, and the answer says who served it.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { ChatOpenAI } from "@langchain/openai";
import { PASSWORD } from "../support/harness.ts";
import { startMockUpstream } from "../support/mock_upstream.ts";
import { loggedEvents, startGatewayProcess, stopProcesses } from "../support/process.ts";

Deno.test("a group through the OpenAI SDK and LangChain: the first target's refused key is skipped after its 401, the second serves its model", async () => {
  // The first provider knows no key of ours (401 for each), the second any.
  const first = await startMockUpstream({ keys: ["someone-else"] });
  const second = await startMockUpstream({ chunks: 3 });
  const dir = await Deno.makeTempDir();
  const service = (target: string) => ({ target, rps: 50, burst: 50, maxConn: 8 });
  const gw = await startGatewayProcess({
    kvPath: `${dir}/kv.sqlite3`,
    config: {
      services: { first: service(first.url), second: service(second.url) },
      groups: {
        llama: {
          targets: [
            { service: "first", model: "llama-first" },
            { service: "second", model: "llama-second" },
          ],
        },
      },
    },
    env: { FIRST_API_KEYS: "sk-first", SECOND_API_KEYS: "sk-second" },
  });
  try {
    const baseURL = `${gw.url}/llama/v1`;
    const openai = new OpenAI({ baseURL, apiKey: PASSWORD, maxRetries: 0 });
    const models = await openai.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ["llama"]);
    const chat = await openai.chat.completions.create({
      model: "llama",
      messages: [{ role: "user", content: "hi" }],
    });
    assert.ok(chat.choices[0].message.content, "the SDK got an answer");
    const llm = new ChatOpenAI({
      model: "llama",
      apiKey: PASSWORD,
      configuration: { baseURL },
      maxRetries: 0,
    });
    let streamed = "";
    for await (const part of await llm.stream("hi")) streamed += String(part.content);
    assert.ok(streamed.length > 0, "LangChain streamed an answer");
    const raw = await fetch(`${baseURL}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "whatever", messages: [] }),
    });
    await raw.body?.cancel();
    assert.equal(raw.status, 200);
    assert.equal(raw.headers.get("x-kvgate-target"), "second/llama-second");
    // One chat got the 401 (kvgate then probes the key once, a GET, and disables it); no other.
    const chats = first.received.filter((r) => r.method === "POST");
    assert.equal(chats.length, 1, "the first provider was asked one chat: its 401 rests the key");
    const asked = second.received.map((r) => JSON.parse(r.body).model);
    assert.deepEqual(asked, ["llama-second", "llama-second", "llama-second"]);
    // The chat, LangChain's stream and the raw request: three lines.
    const lines = await loggedEvents(gw.stdout, (l) => l.group === "llama" && !!l.service, 3);
    assert.equal(lines.length, 3, "a line per request sent to a target");
    assert.ok(lines.some((l) => Array.isArray(l.skipped)), "the log says what was skipped");
    assert.ok(lines.every((l) => l.target === "second/llama-second"));
  } finally {
    await stopProcesses([gw]);
    await first.close();
    await second.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a group saturated at 2× its first target's rate over three processes: the first runs near its rate, the second takes the overflow, no 429 anywhere", async () => {
  const first = await startMockUpstream({ latencyMs: 20 });
  const second = await startMockUpstream({ latencyMs: 20 });
  const dir = await Deno.makeTempDir();
  const config = {
    services: {
      first: { target: first.url, rps: 10, burst: 5, maxConn: 20 },
      second: { target: second.url, rps: 100, burst: 20, maxConn: 40 },
    },
    groups: {
      llama: {
        targets: [
          { service: "first", model: "llama-first" },
          { service: "second", model: "llama-second" },
        ],
      },
    },
  };
  const env = { FIRST_API_KEYS: "sk-first", SECOND_API_KEYS: "sk-second" };
  const gws = [];
  try {
    for (let i = 0; i < 3; i++) {
      gws.push(await startGatewayProcess({ kvPath: `${dir}/kv.sqlite3`, config, env }));
    }
    // 20 requests a second for 8 s, spread over the three processes, sent on a fixed beat.
    const seconds = 8;
    const statuses: Promise<number>[] = [];
    const started = Date.now();
    for (let i = 0; i < 20 * seconds; i++) {
      const due = started + i * 50;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      statuses.push(
        fetch(`${gws[i % 3].url}/llama/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "llama", messages: [] }),
          signal: AbortSignal.timeout(30_000),
        }).then(async (r) => {
          await r.body?.cancel();
          return r.status;
        }),
      );
    }
    const all = await Promise.all(statuses);
    const elapsed = (Date.now() - started) / 1000;
    const counts = Object.groupBy(all, (s) => String(s));
    console.log(
      `over ${
        elapsed.toFixed(1)
      } s: first ${first.received.length}, second ${second.received.length}, answers ${
        JSON.stringify(Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v!.length])))
      }`,
    );
    assert.deepEqual(Object.keys(counts), ["200"], "every client got 200");
    assert.equal(first.rateLimited + second.rateLimited, 0, "no upstream 429");
    // While the load lasted, the first target's shared bucket let out burst + rps·t: it ran at
    // ≥ 90% of that, and never above it in any span of its arrivals.
    const at = first.received.map((r) => r.at).sort((a, b) => a - b);
    const during = at.filter((t) => t <= started + seconds * 1000).length;
    const allowed = 5 + 10 * seconds;
    assert.ok(during >= 0.9 * allowed, `the first target ran ${during} of ${allowed}`);
    const span = (at[at.length - 1] - at[0]) / 1000;
    assert.ok(at.length <= 5 + 10 * span + 2, `${at.length} arrivals in ${span} s`);
    assert.ok(second.received.length > 0, "the second target took the overflow");
  } finally {
    await stopProcesses(gws);
    await first.close();
    await second.close();
    await Deno.remove(dir, { recursive: true });
  }
});
