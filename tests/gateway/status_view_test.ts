/**
 * The status page on an instance that serves none of the service's
 * requests, where the deployment hears of changes only by reading (a KV
 * file shared by processes: no watch): what it shows of the keys and the
 * pause is read again when the page is asked, not what it last knew.
 */
import assert from "node:assert/strict";
import { keyId } from "../../keys/mod.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { PASSWORD } from "../support/harness.ts";
import { chatRequest, fakeUpstream, inProcessGateway, jsonAnswer } from "../support/in_process.ts";

Deno.test("status: a key disabled and a service paused by another instance show on this one's page within a second, with no request served here", async () => {
  const clock = new FakeClock();
  await using kv = await Deno.openKv(":memory:");
  const upstream = fakeUpstream((key) =>
    key === "sk-a-secret-key"
      ? jsonAnswer(401, { error: { message: "bad key", code: "invalid_api_key" } })
      : jsonAnswer(200, { choices: [] })
  );
  const make = () =>
    inProcessGateway(
      { services: { openai: { target: "http://upstream.test", rps: 100, burst: 100 } } },
      { OPENAI_API_KEYS: "sk-a-secret-key,sk-b-secret-key" },
      { kv, clock, fetch: upstream.fetch, random: () => 0.5, watchKv: false },
    );
  const page = await make();
  const served = await make();
  const status = async () => {
    const req = new Request("http://gw/_kvgate/status", {
      headers: { authorization: `Bearer ${PASSWORD}` },
    });
    return (await (await settle(clock, page.handler(req), 1)).json()).services.openai;
  };
  try {
    const a = await keyId("sk-a-secret-key");
    assert.equal((await status()).keys.find((k: { id: string }) => k.id === a).state, "active");
    await (await settle(clock, served.handler(chatRequest()), 1)).body?.cancel();
    const pause = new Request("http://gw/_kvgate/services/openai/pause", {
      method: "POST",
      headers: { authorization: `Bearer ${PASSWORD}` },
    });
    assert.equal((await settle(clock, served.handler(pause), 1)).status, 200);
    await clock.advance(1100);
    const now = await status();
    const key = now.keys.find((k: { id: string }) => k.id === a);
    assert.equal(key.state, "disabled");
    assert.equal(key.reason, "unauthorized");
    assert.equal(now.backoff?.until, "resumed by an admin");
  } finally {
    await page.close();
    await served.close();
  }
});
