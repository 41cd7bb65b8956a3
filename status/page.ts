/**
 * The status page: one HTML document with its style and script inline, no
 * build step and nothing fetched from elsewhere (it works on an air-gapped
 * network). It reads `/_kvgate/status` every 3 s and draws it: a bar per
 * service bucket and per key quota, the keys with their state and why
 * (with a button that enables a resting key), the teams and their budgets,
 * and a chart of requests and 429s per second over the last 15 minutes
 * (inline SVG). The browser's Basic credentials go with every fetch.
 *
 * @module
 */

/** The page, as served to the admin. */
export const STATUS_PAGE = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kvgate status</title>
<style>
:root { color-scheme: light dark; --ok: #2e7d32; --warn: #ef6c00; --bad: #c62828; --muted: #888; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; margin: .3em 0; }
td, th { padding: .2em .7em; border-bottom: 1px solid #8884; text-align: left; vertical-align: top; }
.bar { display: inline-block; width: 140px; height: 10px; background: #8883; vertical-align: middle; }
.bar > i { display: block; height: 100%; background: var(--ok); }
.state-cooling { color: var(--warn); } .state-disabled { color: var(--bad); }
.state-paced { color: #1565c0; } .muted { color: var(--muted); }
button { font: inherit; padding: .1em .6em; }
#error { color: var(--bad); }
svg { background: #8881; }
</style>
</head>
<body>
<h1>kvgate <span class="muted" id="at"></span></h1>
<div id="error"></div>
<div id="services"></div>
<h2>Model groups</h2>
<div id="groups"></div>
<h2>Teams</h2>
<div id="teams"></div>
<h2>Instances</h2>
<div id="instances"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const bar = (part, whole) => {
  const pct = whole > 0 ? Math.max(0, Math.min(100, (100 * part) / whole)) : 0;
  return '<span class="bar" title="' + esc(part) + " of " + esc(whole) + '"><i style="width:' +
    pct.toFixed(0) + '%"></i></span> ' + esc(part) + " / " + esc(whole);
};

function chart(name, perMinute) {
  const w = 420, h = 90, now = Date.now(), from = now - 15 * 60000;
  const points = perMinute.map((m) => ({
    x: ((m.minute - from) / (15 * 60000)) * w,
    rps: m.requests / 60,
    refused: (m.refused + m.upstream429) / 60,
  }));
  const top = Math.max(0.1, ...points.map((p) => p.rps));
  const y = (v) => h - 4 - (v / top) * (h - 8);
  const line = (key, color, cls) =>
    '<polyline fill="none" stroke="' + color + '" points="' +
    points.map((p) => p.x.toFixed(1) + "," + y(p[key]).toFixed(1)).join(" ") + '"/>' +
    points.map((p) =>
      '<circle class="' + cls + '" r="2.5" fill="' + color + '" cx="' + p.x.toFixed(1) + '" cy="' +
      y(p[key]).toFixed(1) + '"><title>' + p[key].toFixed(2) + '/s</title></circle>'
    ).join("");
  return '<svg class="chart" data-service="' + esc(name) + '" width="' + w + '" height="' + h +
    '" role="img" aria-label="requests and 429s per second, last 15 minutes">' +
    line("rps", "#1565c0", "point-requests") + line("refused", "#c62828", "point-429") +
    '</svg><div class="muted">requests/s (blue), 429s/s (red), last 15 minutes; top ' +
    top.toFixed(2) + "/s</div>";
}

function keyRow(service, k) {
  const why = k.state === "active" || k.state === "paced"
    ? (k.paced ? "paced at " + [k.paced.rpm && k.paced.rpm.toFixed(1) + " req/min",
      k.paced.tpm && k.paced.tpm + " tokens/min"].filter(Boolean).join(", ") : "")
    : esc(k.reason) + (k.since ? " since " + esc(k.since) : "") + " until " + esc(k.until);
  const req = k.provider && k.provider.requests;
  const today = k.today
    ? "today " + (k.today.rpd ? bar(k.today.requests, k.today.rpd) : esc(k.today.requests) + " requests") +
      ", " + esc(k.today.tokens) + " tokens "
    : "";
  const quota = today +
    (req && req.limit ? "left " + bar(req.remaining ?? 0, req.limit) : "");
  const action = k.state === "cooling" || k.state === "disabled"
    ? '<button data-enable="' + esc(k.id) + '" data-service="' + esc(service) + '">Enable</button>'
    : "";
  return '<tr class="key" data-key="' + esc(k.id) + '" data-state="' + esc(k.state) + '"><td><code>' +
    esc(k.id) + '</code></td><td class="state-' + esc(k.state) + '">' + esc(k.state) +
    "</td><td>" + why + "</td><td>" + quota + "</td><td>" + esc(k.lastStatus) + "</td><td>" +
    esc(k.answers) + "</td><td>" + action + "</td></tr>";
}

function service(name, s) {
  if (!s.keys.length) {
    return '<div class="service idle muted" data-service="' + esc(name) + '">' + esc(name) +
      ": no keys</div>";
  }
  const five = s.lastFiveMinutes || {};
  const pause = s.backoff
    ? '<span class="state-cooling">paused: ' + esc(s.backoff.reason) + " (" + esc(s.backoff.until) +
      ')</span> <button data-resume="' + esc(name) + '">Resume</button>'
    : '<button data-pause="' + esc(name) + '">Pause</button>';
  const bucket = s.bucketTokens === null ? "—" : bar(s.bucketTokens, s.limits.burst);
  const inFlight = s.inFlight === null ? "—" : bar(s.inFlight, s.limits.maxConn);
  return '<section class="service" data-service="' + esc(name) + '"><h2>' + esc(name) + " " + pause +
    "</h2><table><tr><th>bucket</th><td>" + bucket + "</td><th>in flight</th><td>" + inFlight +
    "</td><th>queued here</th><td>" + esc(s.queuedHere) +
    Object.entries(s.queuedByTeam || {}).map(([t, n]) => " " + esc(t || "password") + ": " + esc(n)).join(",") +
    "</td></tr><tr><th>last 5 min</th><td colspan=5>" +
    esc(five.requests ?? "—") + " requests, " + esc(five.refused ?? "—") + " answered 429, " +
    esc(five.upstream429 ?? "—") + " upstream 429s, " + esc(five.errors ?? "—") + " errors</td></tr></table>" +
    "<table><tr><th>key</th><th>state</th><th>why</th><th>quota</th><th>last</th><th>answers here</th><th></th></tr>" +
    s.keys.map((k) => keyRow(name, k)).join("") + "</table>" + chart(name, s.perMinute || []) + "</section>";
}

function teams(list) {
  if (!list.length) return '<span class="muted">none</span>';
  return "<table><tr><th>team</th><th>weight</th><th>requests today</th><th>tokens today</th><th>waiting here</th><th>429s here</th></tr>" +
    list.map((t) => {
      const u = t.usageToday || {};
      const cell = (used, budget) => budget ? bar(used ?? 0, budget) : esc(used ?? "—");
      return '<tr class="team"><td>' + esc(t.name) + "</td><td>" + esc(t.weight) + "</td><td>" +
        cell(u.requests, t.daily && t.daily.requests) + "</td><td>" +
        cell(u.tokens, t.daily && t.daily.tokens) + "</td><td>" + esc(t.waitingHere) + "</td><td>" +
        esc(t.refusedHere) + "</td></tr>";
    }).join("") + "</table>";
}

function groups(list) {
  if (!list || !list.length) return '<span class="muted">none</span>';
  return "<table><tr><th>group</th><th>target</th><th>state</th><th>until</th></tr>" +
    list.flatMap((g) => g.targets.map((t, i) =>
      '<tr class="group"><td>' + (i === 0 ? esc(g.name) : "") + "</td><td><code>" + esc(t.target) +
      '</code></td><td class="' + (t.state === "ready" ? "state-active" : "state-cooling") + '">' +
      esc(t.state) + "</td><td>" + esc(t.until || "") + "</td></tr>"
    )).join("") + "</table>";
}

async function act(path) {
  // From the origin, never the URL: a page opened as user:password@host cannot fetch relative URLs.
  const r = await fetch(location.origin + path, { method: "POST", headers: { "x-kvgate-admin": "1" } });
  if (!r.ok) $("error").textContent = "The action failed: " + r.status;
  await refresh();
}

async function refresh() {
  try {
    const r = await fetch(location.origin + "/_kvgate/status", { cache: "no-store" });
    if (!r.ok) throw new Error("status " + r.status);
    const s = await r.json();
    $("error").textContent = "";
    $("at").textContent = s.at +
      (s.kvWarning ? " — " + s.kvWarning : s.kvDegraded ? " — KV degraded" : "");
    $("services").innerHTML = Object.entries(s.services).map(([n, v]) => service(n, v)).join("");
    $("groups").innerHTML = groups(s.groups);
    $("teams").innerHTML = teams(s.teams);
    $("instances").innerHTML = "<table><tr><th>instance</th><th>started</th><th>last seen</th><th>region</th></tr>" +
      s.instances.map((i) => "<tr><td><code>" + esc(i.id) + "</code></td><td>" +
        esc(i.startedAt && new Date(i.startedAt).toISOString()) + "</td><td>" +
        esc(new Date(i.seenAt).toISOString()) + "</td><td>" + esc(i.region || "—") + "</td></tr>").join("") +
      "</table>";
  } catch (e) {
    $("error").textContent = "Status unavailable: " + e.message;
  }
}

document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  if (b.dataset.enable) act("/_kvgate/keys/" + encodeURIComponent(b.dataset.service) + "/" + encodeURIComponent(b.dataset.enable) + "/enable");
  if (b.dataset.pause) act("/_kvgate/services/" + encodeURIComponent(b.dataset.pause) + "/pause");
  if (b.dataset.resume) act("/_kvgate/services/" + encodeURIComponent(b.dataset.resume) + "/resume");
});
refresh();
setInterval(refresh, 3000);
</script>
</body>
</html>
`;
