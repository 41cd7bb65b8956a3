/**
 * This instance's counters and histograms, kept in memory and written out
 * in the Prometheus text exposition format. A request updates a few map
 * entries keyed by its label values (up to three per family, positional,
 * so no label object is made per request); gauges of the deployment are
 * read from KV only when the metrics are asked for.
 *
 * @module
 */

/** One series' label values, in the family's label order. */
type Values = readonly [string, string?, string?];

/** A counter family: its series by label values. */
export class CounterFamily {
  readonly name: string;
  readonly help: string;
  readonly labels: readonly string[];
  #series = new Map<string, { values: Values; value: number }>();

  constructor(name: string, help: string, labels: readonly string[]) {
    this.name = name;
    this.help = help;
    this.labels = labels;
  }

  /** Adds `by` (default 1) to the series of these label values. */
  inc(a: string, b = "", c = "", by = 1): void {
    const key = a + "\u0001" + b + "\u0001" + c;
    const s = this.#series.get(key);
    if (s !== undefined) s.value += by;
    else this.#series.set(key, { values: [a, b, c], value: by });
  }

  /** The value of one series (0 when it has none). */
  get(a: string, b = "", c = ""): number {
    return this.#series.get(a + "\u0001" + b + "\u0001" + c)?.value ?? 0;
  }

  /** The sum of the series whose label `i` is `v` and label `j` is `w` (0-based). */
  sumWhere(i: number, v: string, j: number, w: string): number {
    let n = 0;
    for (const s of this.#series.values()) if (s.values[i] === v && s.values[j] === w) n += s.value;
    return n;
  }

  /** The family in the text format. */
  render(): string {
    let out = header(this.name, this.help, "counter");
    for (const s of this.#series.values()) {
      out += `${this.name}${labelText(this.labels, s.values)} ${s.value}\n`;
    }
    return out;
  }
}

/** A histogram family with fixed bucket bounds (seconds), one label. */
export class HistogramFamily {
  readonly name: string;
  readonly help: string;
  readonly label: string;
  readonly bounds: readonly number[];
  #series = new Map<string, { counts: number[]; sum: number; count: number }>();

  constructor(name: string, help: string, label: string, bounds: readonly number[]) {
    this.name = name;
    this.help = help;
    this.label = label;
    this.bounds = bounds;
  }

  /** Counts one observation of `v` for the label value `a`. */
  observe(a: string, v: number): void {
    let s = this.#series.get(a);
    if (s === undefined) {
      s = { counts: new Array(this.bounds.length).fill(0), sum: 0, count: 0 };
      this.#series.set(a, s);
    }
    for (let i = 0; i < this.bounds.length; i++) if (v <= this.bounds[i]) s.counts[i]++;
    s.sum += v;
    s.count++;
  }

  /** The family in the text format (bucket counts are cumulative, as the format wants). */
  render(): string {
    let out = header(this.name, this.help, "histogram");
    for (const [a, s] of this.#series) {
      const l = `${this.label}="${escape(a)}"`;
      for (let i = 0; i < this.bounds.length; i++) {
        out += `${this.name}_bucket{${l},le="${this.bounds[i]}"} ${s.counts[i]}\n`;
      }
      out += `${this.name}_bucket{${l},le="+Inf"} ${s.count}\n`;
      out += `${this.name}_sum{${l}} ${s.sum}\n${this.name}_count{${l}} ${s.count}\n`;
    }
    return out;
  }
}

/** A gauge's series, computed when the metrics are asked for. */
export interface GaugeSeries {
  labels: Record<string, string>;
  value: number;
}

/** A gauge family as rendered. */
export interface Gauge {
  name: string;
  help: string;
  series: GaugeSeries[];
}

/** Renders a gauge family. */
export function renderGauge(g: Gauge): string {
  let out = header(g.name, g.help, "gauge");
  for (const s of g.series) {
    const names = Object.keys(s.labels);
    out += `${g.name}${
      labelText(names, names.map((n) => s.labels[n]) as unknown as Values)
    } ${s.value}\n`;
  }
  return out;
}

/** Latency buckets, seconds: from a cached answer to a long queue. */
export const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** kvgate's metric families of this instance; see the README for which is which. */
export class Metrics {
  readonly requests = new CounterFamily(
    "kvgate_requests_total",
    "Requests answered by this instance, by service, team and status.",
    ["service", "team", "status"],
  );
  readonly upstream = new CounterFamily(
    "kvgate_upstream_responses_total",
    "Upstream answers received by this instance, by service, key id and status.",
    ["service", "key", "status"],
  );
  readonly retries = new CounterFamily(
    "kvgate_retries_total",
    "Attempts after the first, by service and the reason for the retry.",
    ["service", "reason"],
  );
  readonly tokens = new CounterFamily(
    "kvgate_tokens_total",
    "Model tokens the answers kvgate read reported, by service, team and type (input, output, cached_input, or total).",
    ["service", "team", "type"],
  );
  readonly groupRequests = new CounterFamily(
    "kvgate_group_requests_total",
    "Requests to a model group, by group, the target that answered (service/model) and status.",
    ["group", "target", "outcome"],
  );
  readonly groupSkips = new CounterFamily(
    "kvgate_group_skips_total",
    "Targets of a model group passed over, by group, target and why.",
    ["group", "target", "reason"],
  );
  readonly queueWait = new HistogramFamily(
    "kvgate_queue_wait_seconds",
    "Time a request waited for a slot, a token or a key, by service.",
    "service",
    SECONDS_BUCKETS,
  );
  readonly ttfb = new HistogramFamily(
    "kvgate_upstream_ttfb_seconds",
    "Time from sending a request upstream to its response headers, by service.",
    "service",
    SECONDS_BUCKETS,
  );

  /** The status of each key's latest upstream answer, by key id. */
  readonly lastStatus = new Map<string, number>();

  /** Counts an upstream answer (`status`: the HTTP status, or `timeout` / `network`). */
  upstreamAnswer(service: string, keyId: string, status: number | string): void {
    this.upstream.inc(service, keyId, typeof status === "number" ? statusLabel(status) : status);
    if (typeof status === "number") this.lastStatus.set(keyId, status);
  }

  /** Upstream answers to one key seen here. */
  answersOf(service: string, keyId: string): number {
    return this.upstream.sumWhere(0, service, 1, keyId);
  }

  /** Every family of this instance, then the gauges given, in the text format. */
  render(gauges: readonly Gauge[] = []): string {
    return [
      this.requests,
      this.upstream,
      this.retries,
      this.tokens,
      this.groupRequests,
      this.groupSkips,
      this.queueWait,
      this.ttfb,
    ].map((f) => f.render()).join("") + gauges.map(renderGauge).join("");
  }
}

function header(name: string, help: string, type: string): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
}

function labelText(names: readonly string[], values: Values): string {
  if (names.length === 0) return "";
  const parts: string[] = [];
  for (let i = 0; i < names.length; i++) parts.push(`${names[i]}="${escape(values[i] ?? "")}"`);
  return `{${parts.join(",")}}`;
}

/** A label value as the text format wants it: backslash, quote and newline escaped. */
function escape(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/** Status labels made once: a request's status as a label costs no new string. */
const STATUS_LABELS = new Map<number, string>();

/** `status` as a label value. */
export function statusLabel(status: number): string {
  let s = STATUS_LABELS.get(status);
  if (s === undefined) STATUS_LABELS.set(status, s = String(status));
  return s;
}
