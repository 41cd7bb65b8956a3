/**
 * Tokens an answer used, from what the provider reports: OpenAI's `usage`
 * (chat completions, JSON and the final SSE chunk when the client asked for
 * it; the Responses API, JSON and its `response.completed` event),
 * Anthropic's `message_start` / `message_delta` usage, Gemini's
 * `usageMetadata`. When an answer reports none, {@linkcode estimateTokens}
 * stands in.
 *
 * Cached input is counted apart (`cachedInput`) but never left out: OpenAI
 * and Gemini count it inside their prompt tokens, Anthropic outside its
 * `input_tokens` (`cache_read_input_tokens`; `cache_creation_input_tokens`
 * is input written to the cache, counted as input). A budget counts every
 * token the provider processed.
 *
 * @module
 */

/** An answer's tokens split as the providers report them. */
export interface TokenUsage {
  /** Prompt tokens not read from a cache (Anthropic's cache writes included). */
  input: number;
  output: number;
  /** Prompt tokens read from the provider's cache. */
  cachedInput: number;
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : 0);

/** The split of one usage object in any of the shapes, or undefined when it is none. */
export function splitOfUsage(u: unknown): TokenUsage | undefined {
  if (typeof u !== "object" || u === null) return undefined;
  const o = u as Record<string, unknown>;
  const details = (o.prompt_tokens_details ?? o.input_tokens_details) as
    | Record<string, unknown>
    | undefined;
  if ("prompt_tokens" in o || "completion_tokens" in o) {
    const cached = num(details?.cached_tokens);
    return {
      input: num(o.prompt_tokens) - cached,
      output: num(o.completion_tokens),
      cachedInput: cached,
    };
  }
  if ("promptTokenCount" in o || "candidatesTokenCount" in o) {
    const cached = num(o.cachedContentTokenCount);
    return {
      input: num(o.promptTokenCount) - cached,
      output: num(o.candidatesTokenCount),
      cachedInput: cached,
    };
  }
  if ("input_tokens" in o || "output_tokens" in o) {
    if (details !== undefined) {
      // The Responses API: cached tokens are part of input_tokens.
      const cached = num(details.cached_tokens);
      return {
        input: num(o.input_tokens) - cached,
        output: num(o.output_tokens),
        cachedInput: cached,
      };
    }
    return {
      input: num(o.input_tokens) + num(o.cache_creation_input_tokens),
      output: num(o.output_tokens),
      cachedInput: num(o.cache_read_input_tokens),
    };
  }
  return undefined;
}

/** Tokens of one usage object in any of the shapes, or undefined. */
export function tokensOfUsage(u: unknown): number | undefined {
  if (typeof u !== "object" || u === null) return undefined;
  const o = u as Record<string, unknown>;
  if (typeof o.total_tokens === "number") return num(o.total_tokens);
  if (typeof o.totalTokenCount === "number") return num(o.totalTokenCount);
  const split = splitOfUsage(o);
  return split === undefined ? undefined : split.input + split.output + split.cachedInput;
}

/** What a usage object says, parsed from the text that starts at its key (or undefined). */
function usageAt(text: string, at: number): unknown {
  // The object after `"usage":` (or `"usageMetadata":`), found by balancing braces.
  const open = text.indexOf("{", at);
  if (open === -1) return undefined;
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 123) depth++;
    else if (c === 125 && --depth === 0) {
      try {
        return JSON.parse(text.slice(open, i + 1));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/**
 * The input, output and cached input tokens a JSON answer reports (any of
 * the shapes; only its last `"usage` object is parsed), or undefined.
 */
export function usageSplitFromJson(text: string): TokenUsage | undefined {
  const at = text.lastIndexOf('"usage');
  if (at === -1) return undefined;
  return splitOfUsage(usageAt(text, at));
}

const TOTAL = /"(?:total_tokens|totalTokenCount)"\s*:\s*(\d+)/;
const INPUT = /"input_tokens"\s*:\s*(\d+)/;
const OUTPUT = /"output_tokens"\s*:\s*(\d+)/;
/** Anthropic's cache counts, outside its input_tokens: their presence sends the read to the parser. */
const ANTHROPIC_CACHE = /"cache_(?:read|creation)_input_tokens"\s*:\s*[1-9]/;

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
  if (input && output && !ANTHROPIC_CACHE.test(tail)) return Number(input[1]) + Number(output[1]);
  const usage = tokensOfUsage(usageAt(text, at));
  if (usage !== undefined) return usage;
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
 * mention usage are parsed. OpenAI's, the Responses API's
 * (`response.completed`) and Gemini's last report wins; Anthropic's input
 * and cache counts (`message_start`) and output count (cumulative,
 * `message_delta`) add up.
 */
export class SseUsageMeter {
  #decoder = new TextDecoder();
  #partial = "";
  #total: number | undefined;
  #split: TokenUsage = { input: 0, output: 0, cachedInput: 0 };

  /** Tokens reported so far, or undefined when none was. */
  get tokens(): number | undefined {
    return this.#total;
  }

  /** The input, output and cached input tokens reported, when the stream said them apart. */
  get split(): TokenUsage | undefined {
    const s = this.#split;
    return this.#total === undefined || s.input + s.output + s.cachedInput === 0 ? undefined : s;
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
      this.#split = splitOfUsage(message.usage) ?? { input: 0, output: 0, cachedInput: 0 };
    } else if (event.type === "message_delta") {
      // Counts so far: output always, the input and cache counts when it repeats them.
      const u = (event.usage ?? {}) as Record<string, unknown>;
      const s = this.#split;
      if (typeof u.output_tokens === "number") s.output = num(u.output_tokens);
      if (typeof u.input_tokens === "number") {
        s.input = num(u.input_tokens) + num(u.cache_creation_input_tokens);
      }
      if (typeof u.cache_read_input_tokens === "number") {
        s.cachedInput = num(u.cache_read_input_tokens);
      }
    } else {
      const response = event.response as Record<string, unknown> | undefined;
      const usage = event.type === "response.completed" && response
        ? response.usage
        : event.usage ?? event.usageMetadata;
      const total = tokensOfUsage(usage);
      if (total === undefined) return;
      this.#total = total;
      this.#split = splitOfUsage(usage) ?? { input: 0, output: 0, cachedInput: 0 };
      return;
    }
    const s = this.#split;
    this.#total = s.input + s.output + s.cachedInput;
  }
}
