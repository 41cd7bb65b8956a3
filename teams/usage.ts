/**
 * Tokens an answer used, from what the provider reports: OpenAI's `usage`
 * (JSON, and the final SSE chunk when the client asked for it), Anthropic's
 * `message_start` / `message_delta` usage, Gemini's `usageMetadata`. When
 * an answer reports none, {@linkcode estimateTokens} stands in.
 *
 * @module
 */

/** Tokens of one usage object in any of the three shapes, or undefined. */
export function tokensOfUsage(u: unknown): number | undefined {
  if (typeof u !== "object" || u === null) return undefined;
  const o = u as Record<string, unknown>;
  const n = (v: unknown) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : 0);
  if (typeof o.total_tokens === "number") return n(o.total_tokens);
  if (typeof o.totalTokenCount === "number") return n(o.totalTokenCount);
  if ("prompt_tokens" in o || "completion_tokens" in o) {
    return n(o.prompt_tokens) + n(o.completion_tokens);
  }
  if ("input_tokens" in o || "output_tokens" in o) return n(o.input_tokens) + n(o.output_tokens);
  return undefined;
}

/** An answer's tokens split as the providers report them: the prompt's, and the answer's own. */
export interface TokenUsage {
  input: number;
  output: number;
}

const PROMPT = /"(?:prompt_tokens|input_tokens|promptTokenCount)"\s*:\s*(\d+)/;
const COMPLETION = /"(?:completion_tokens|output_tokens|candidatesTokenCount)"\s*:\s*(\d+)/;

/**
 * The input and output tokens a JSON answer reports (OpenAI, Anthropic or
 * Gemini shape, read with a pattern from its last `"usage`), or undefined.
 */
export function usageSplitFromJson(text: string): TokenUsage | undefined {
  const at = text.lastIndexOf('"usage');
  if (at === -1) return undefined;
  const tail = text.slice(at);
  const input = PROMPT.exec(tail), output = COMPLETION.exec(tail);
  if (!input && !output) return undefined;
  return { input: input ? Number(input[1]) : 0, output: output ? Number(output[1]) : 0 };
}

const TOTAL = /"(?:total_tokens|totalTokenCount)"\s*:\s*(\d+)/;
const INPUT = /"input_tokens"\s*:\s*(\d+)/;
const OUTPUT = /"output_tokens"\s*:\s*(\d+)/;

/**
 * Tokens reported in a JSON answer's body, or undefined when it reports
 * none. The usual shapes are read with a pattern, not by parsing the whole
 * body (every team answer passes here: parsing cost more than the rest of
 * the team path); anything else is parsed.
 */
export function usageFromJson(text: string): number | undefined {
  const at = text.lastIndexOf('"usage');
  if (at === -1) return undefined;
  const tail = text.slice(at);
  const total = TOTAL.exec(tail);
  if (total) return Number(total[1]);
  const input = INPUT.exec(tail), output = OUTPUT.exec(tail);
  if (input && output) return Number(input[1]) + Number(output[1]);
  try {
    const body = JSON.parse(text) as Record<string, unknown>;
    return tokensOfUsage(body.usage) ?? tokensOfUsage(body.usageMetadata);
  } catch {
    return undefined;
  }
}

/**
 * The README's estimate for an answer that reports no usage: one token per
 * four bytes of request and answer body together, at least 1.
 */
export function estimateTokens(requestBytes: number, answerBytes: number): number {
  return Math.max(1, Math.ceil((requestBytes + answerBytes) / 4));
}

/**
 * Reads usage out of an SSE stream as it passes: only `data:` lines that
 * mention usage are parsed. OpenAI's and Gemini's last report wins;
 * Anthropic's input count (`message_start`) and output count (cumulative,
 * `message_delta`) add up.
 */
export class SseUsageMeter {
  #decoder = new TextDecoder();
  #partial = "";
  #total: number | undefined;
  #input = 0;
  #output = 0;

  /** Tokens reported so far, or undefined when none was. */
  get tokens(): number | undefined {
    return this.#total;
  }

  /** The input and output tokens reported, when the stream said them apart. */
  get split(): TokenUsage | undefined {
    return this.#total === undefined || this.#input + this.#output === 0
      ? undefined
      : { input: this.#input, output: this.#output };
  }

  /** Reads one chunk of the stream. */
  push(chunk: Uint8Array): void {
    const text = this.#partial + this.#decoder.decode(chunk, { stream: true });
    const last = text.lastIndexOf("\n");
    if (last === -1) {
      this.#partial = text.length > 65_536 ? "" : text;
      return;
    }
    this.#partial = text.slice(last + 1);
    if (!text.includes("sage")) return;
    for (const line of text.slice(0, last).split("\n")) {
      if (line.startsWith("data:") && line.includes("sage")) this.#read(line.slice(5).trim());
    }
  }

  #read(data: string): void {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    const message = event.message as Record<string, unknown> | undefined;
    if (event.type === "message_start" && message) {
      const u = message.usage as Record<string, number> | undefined;
      this.#input = u?.input_tokens ?? 0;
      this.#output = u?.output_tokens ?? 0;
      this.#total = this.#input + this.#output;
    } else if (event.type === "message_delta") {
      const u = event.usage as Record<string, number> | undefined;
      if (typeof u?.output_tokens === "number") this.#output = u.output_tokens;
      this.#total = this.#input + this.#output;
    } else {
      const usage = (event.usage ?? event.usageMetadata) as Record<string, number> | undefined;
      this.#total = tokensOfUsage(usage) ?? this.#total;
      if (usage && typeof usage === "object") {
        this.#input = usage.prompt_tokens ?? usage.promptTokenCount ?? this.#input;
        this.#output = usage.completion_tokens ?? usage.candidatesTokenCount ?? this.#output;
      }
    }
  }
}
