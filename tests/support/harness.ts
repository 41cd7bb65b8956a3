import { loadConfig } from "../../config/mod.ts";
import { type MockOptions, type MockUpstream, startMockUpstream } from "./mock_upstream.ts";
import {
  createGateway,
  type Gateway,
  type GatewayOptions,
  type LogLine,
} from "../../gateway/mod.ts";

/** One test service: any config fields plus its keys. */
export interface TestService {
  target: string;
  keys?: string[];
  rps?: number;
  burst?: number;
  maxConn?: number;
  style?: "openai" | "anthropic" | "gemini";
  streamRelay?: "observe" | "native";
  keyInQuery?: boolean;
}

/** Options for {@linkcode startGateway}. */
export interface HarnessOptions extends Partial<Omit<GatewayOptions, "kv">> {
  services: Record<string, TestService>;
  settings?: Record<string, unknown>;
  /** Default {@linkcode PASSWORD}. Pass null for none. */
  password?: string | null;
  kv?: Deno.Kv;
  env?: Record<string, string>;
}

/** A gateway serving on 127.0.0.1 with its log lines captured. */
export interface RunningGateway {
  url: string;
  gateway: Gateway;
  kv: Deno.Kv;
  logs: LogLine[];
  close(): Promise<void>;
}

export const PASSWORD = "test-password-0123456789";

/** Starts a gateway on an ephemeral loopback port. */
export async function startGateway(options: HarnessOptions): Promise<RunningGateway> {
  const env: Record<string, string> = { ...options.env };
  const services: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(options.services)) {
    const { keys, ...rest } = s;
    services[name] = rest;
    if (keys) env[`${name.toUpperCase().replaceAll("-", "_")}_API_KEYS`] = keys.join(",");
  }
  env.GATEWAY_CONFIG = JSON.stringify({ ...options.settings, services });
  if (options.password !== null) env.ACCESS_PASSWORD = options.password ?? PASSWORD;
  const config = loadConfig((n) => env[n]);
  const ownKv = options.kv === undefined;
  const kv = options.kv ?? await Deno.openKv(":memory:");
  const logs: LogLine[] = [];
  const gateway = await createGateway(config, {
    ...options,
    kv,
    log: options.log ?? ((l) => logs.push(l)),
  });
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    gateway.handler,
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    gateway,
    kv,
    logs,
    async close() {
      await gateway.close();
      ac.abort();
      await server.finished;
      if (ownKv) kv.close();
    },
  };
}

/** Headers carrying the test password. */
export function auth(extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${PASSWORD}`, ...extra };
}

/** A chat completion request body. */
export function chatBody(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    model: "mock-model",
    messages: [{ role: "user", content: "hi" }],
    ...extra,
  });
}

/** A mock provider with a gateway in front of it; `await using` closes both. */
export interface MockedGateway extends AsyncDisposable {
  mock: MockUpstream;
  gw: RunningGateway;
}

/**
 * Starts a mock provider, then a gateway built by `gatewayOptions` from the
 * mock's URL. The mock is closed again if the gateway fails to start.
 */
export async function startMocked(
  mockOptions: MockOptions,
  gatewayOptions: (mockUrl: string) => HarnessOptions,
): Promise<MockedGateway> {
  const mock = await startMockUpstream(mockOptions);
  let gw: RunningGateway;
  try {
    gw = await startGateway(gatewayOptions(mock.url));
  } catch (e) {
    await mock.close();
    throw e;
  }
  return {
    mock,
    gw,
    async [Symbol.asyncDispose]() {
      await gw.close();
      await mock.close();
    },
  };
}

/** POSTs a chat completion through the gateway's `/openai` service. */
export function postChat(url: string, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: auth({ "content-type": "application/json" }),
    body: chatBody(),
    signal,
  });
}

/** Discards a response's body and returns its status. */
export async function drain(r: Response): Promise<number> {
  await r.body?.cancel();
  return r.status;
}
