/**
 * The status page in a real browser: Debian's chromium driven by
 * playwright-core. Without the password the browser sees nginx; with it,
 * every service and key, a key cooling after a 429 and disabled after a
 * 401 within one refresh, enabled again from the page, and a chart with
 * points. A screenshot goes to a temporary folder, out of git.
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { keyId } from "../../keys/mod.ts";
import { startMockUpstream } from "../support/mock_upstream.ts";
import { PASSWORD, startGateway } from "../support/harness.ts";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
if (!hasChromium) {
  console.warn(
    `status page test skipped: no ${CHROMIUM} (apt-get install -y chromium; .ci/run installs it)`,
  );
}

Deno.test({
  name:
    "status page in chromium: nginx to strangers; keys cooling and disabled with the reason, enabled from the page; a chart with points",
  ignore: !hasChromium,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const mock = await startMockUpstream();
    const gw = await startGateway({
      services: {
        openai: {
          target: mock.url,
          keys: ["sk-page-one-secret", "sk-page-two-secret"],
          rps: 100,
          burst: 100,
          maxConn: 10,
        },
      },
      settings: { maxRetries: 1 },
      minuteFlushMs: 200,
    });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    const shots = await Deno.makeTempDir({ prefix: "kvgate-status-page-" });
    try {
      // A stranger: nginx's Basic-auth 401 (headless chromium cannot show the sign-in prompt,
      // so the stranger's request goes through the browser's own request API), nothing of kvgate.
      const stranger = await browser.newContext();
      const refused = await stranger.request.get(`${gw.url}/_kvgate/`);
      assert.equal(refused.status(), 401);
      assert.equal(refused.headers()["www-authenticate"], 'Basic realm="Restricted"');
      const strangerText = await refused.text();
      assert.match(strangerText, /nginx/);
      assert.doesNotMatch(strangerText, /kvgate/i);
      const status = await stranger.request.get(`${gw.url}/_kvgate/status`);
      assert.equal(status.status(), 404);
      assert.doesNotMatch(await status.text(), /kvgate/i);
      await stranger.close();

      const context = await browser.newContext({
        httpCredentials: { username: "admin", password: PASSWORD },
      });
      const page = await context.newPage();
      const chat = async () => {
        const r = await fetch(`${gw.url}/openai/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${PASSWORD}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "x" }] }),
        });
        await r.body?.cancel();
        return r.status;
      };
      assert.equal(await chat(), 200);
      await page.goto(`${gw.url}/_kvgate/`);
      const one = await keyId("sk-page-one-secret"), two = await keyId("sk-page-two-secret");
      await page.waitForSelector(`tr.key[data-key="${one}"]`);
      assert.equal(await page.locator("section.service").count() >= 1, true);
      assert.equal(await page.locator(`section[data-service="openai"] tr.key`).count(), 2);

      const stateOf = (id: string) =>
        page.locator(`tr.key[data-key="${id}"]`).getAttribute("data-state");
      const waitState = async (id: string, state: string) => {
        // One refresh is 3 s; the status is at most a second old.
        for (let i = 0; i < 50 && (await stateOf(id)) !== state; i++) {
          await page.waitForTimeout(100);
        }
        assert.equal(await stateOf(id), state, `key ${id} should be ${state}`);
      };

      mock.script.set("sk-page-one-secret", [{
        status: 429,
        headers: { "retry-after": "120" },
        body: '{"error":{"message":"slow down"}}',
      }]);
      mock.script.set("sk-page-two-secret", []);
      for (let i = 0; i < 2; i++) assert.equal(await chat(), 200);
      await waitState(one, "cooling");
      assert.match(await page.locator(`tr.key[data-key="${one}"]`).innerText(), /rate_limited/);

      // Refused twice: the request, then the probe that confirms it is the key.
      const keyRefused = {
        status: 401,
        body: '{"error":{"message":"Incorrect API key","code":"invalid_api_key"}}',
      };
      mock.script.set("sk-page-two-secret", [keyRefused, keyRefused]);
      await chat();
      await waitState(two, "disabled");
      assert.match(await page.locator(`tr.key[data-key="${two}"]`).innerText(), /unauthorized/);

      await page.locator(`button[data-enable="${two}"]`).click();
      await waitState(two, "active");

      for (let i = 0; i < 5; i++) await chat();
      for (let i = 0; i < 60 && (await page.locator("circle.point-requests").count()) === 0; i++) {
        await page.waitForTimeout(100);
      }
      assert(await page.locator("circle.point-requests").count() > 0, "the chart has points");
      await page.screenshot({ path: `${shots}/status.png`, fullPage: true });
      const html = await page.content();
      for (const secret of [PASSWORD, "sk-page-one-secret", "sk-page-two-secret"]) {
        assert(!html.includes(secret), "a secret on the page");
      }
      console.log(`status page screenshot: ${shots}/status.png`);

      // Opened through a URL that carries the credentials (user:password@host), it works too.
      const port = new URL(gw.url).port;
      const withCredentials = await (await browser.newContext()).newPage();
      await withCredentials.goto(`http://admin:${PASSWORD}@127.0.0.1:${port}/_kvgate/`);
      await withCredentials.waitForSelector(`tr.key[data-key="${one}"]`, { timeout: 10_000 });
      assert.equal(await withCredentials.locator("#error").innerText(), "");
    } finally {
      await browser.close();
      await gw.close();
      await mock.close();
    }
  },
});
