import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../config/mod.ts";
import { tokenSha256 } from "../../teams/mod.ts";

const withConfig = (config: unknown) => (n: string) =>
  n === "GATEWAY_CONFIG" ? JSON.stringify(config) : undefined;

Deno.test("config teams: a token is kept only as its SHA-256; fields get their defaults", () => {
  const c = loadConfig(
    withConfig({ teams: { translate: { token: "translate-token-0123456789" } } }),
  );
  assert.equal(c.teams.length, 1);
  const [team] = c.teams;
  assert.equal(team.tokenSha256, tokenSha256("translate-token-0123456789"));
  assert.equal(team.weight, 1);
  assert.equal(team.services, undefined);
  assert(!JSON.stringify(c).includes("translate-token-0123456789"));
  assert.equal(c.dayStartMs, 0);
});

Deno.test("config teams: each mistake is named by its place", () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ teams: { t: { weight: 2 } } }, /teams\.t\.token or tokenSha256 is required/],
    [{ teams: { t: { tokenSha256: "xyz" } } }, /teams\.t\.tokenSha256 must be 64 hex digits/],
    [
      { teams: { t: { token: "short" } } },
      /teams\.t\.token must be a random string of at least 20/,
    ],
    [
      { teams: { "Bad Name": { token: "0123456789abcdefghij" } } },
      /teams\.Bad Name: name must match/,
    ],
    [
      { teams: { admin: { token: "0123456789abcdefghij" } } },
      /teams\.admin: name "admin" is the password's/,
    ],
    [
      { teams: { t: { token: "0123456789abcdefghij", services: ["nope"] } } },
      /teams\.t\.services names no service or group: "nope"/,
    ],
    [
      { teams: { t: { token: "0123456789abcdefghij", limits: { groq: { rps: 50 } } } } },
      /teams\.t\.limits\.groq\.rps must not exceed the service's own rps \(1; got 50\)/,
    ],
    [
      { teams: { t: { token: "0123456789abcdefghij", colour: "red" } } },
      /teams\.t\.colour is not a known field/,
    ],
    [
      { teams: { t: { token: "0123456789abcdefghij", daily: { requests: 1.5 } } } },
      /teams\.t\.daily\.requests must be a positive integer/,
    ],
    [{ dayStartsAt: "25:00" }, /GATEWAY_CONFIG\.dayStartsAt must be "HH:MM"/],
  ];
  for (const [config, message] of cases) {
    assert.throws(
      () => loadConfig(withConfig(config)),
      (e) => e instanceof ConfigError && message.test(e.message),
    );
  }
});

Deno.test("config teams: no two teams, nor a team and the password, share a token", () => {
  const token = "the-same-token-0123456789";
  const env = (n: string) =>
    n === "GATEWAY_CONFIG"
      ? JSON.stringify({ teams: { one: { token }, two: { token } } })
      : undefined;
  assert.throws(() => loadConfig(env), /teams\.two\.token is the same as team one's/);
  const withPassword = (n: string) =>
    n === "ACCESS_PASSWORD"
      ? token
      : n === "GATEWAY_CONFIG"
      ? JSON.stringify({ teams: { one: { token } } })
      : undefined;
  assert.throws(
    () => loadConfig(withPassword),
    /teams\.one\.token is the same as ACCESS_PASSWORD's/,
  );
});
