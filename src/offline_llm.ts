/**
 * A built-in, offline OpenAI-compatible endpoint: answers every chat request with a
 * deterministic, clearly templated thought, so the demo, tests and benches run without a model.
 *
 * Permissions: `--allow-net` for the address it binds (127.0.0.1 by default).
 *
 * @module
 */

import { offlineThought } from "./offline_thought.ts";

/** One message of a request, as checked by the server. */
export interface ChatRequestMessage {
  readonly role: string;
  readonly content: string | null;
}

/** A parsed `POST /v1/chat/completions` body; fields other than these stay as sent. */
export interface ChatRequestBody {
  readonly model: string;
  readonly messages: readonly ChatRequestMessage[];
  readonly [field: string]: unknown;
}

/**
 * Overrides the reply to one chat request; returning `undefined` falls back to the default.
 *
 * @param body The checked request body.
 * @param n 1-based number of this chat request since the server started.
 * @param signal Aborts when the client leaves before the reply's body is done, or when the
 *   server closes. A hook that waits before returning sees only the close: Deno reports a
 *   client that leaves to a pending response body, so return a Response at once and wait in
 *   its body stream.
 * @param headers The request headers.
 */
export type RespondHook = (
  body: ChatRequestBody,
  n: number,
  signal: AbortSignal,
  headers: Headers,
) => Response | undefined | Promise<Response | undefined>;

/** Options of {@linkcode startOfflineLlm}. */
export interface OfflineLlmOptions {
  /**
   * Interface to bind.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * Port to bind; 0 picks a free one.
   * @default {0}
   */
  port?: number;
  /**
   * Delay before each chat reply's body; the status and headers go out at once, so a client
   * that gives up is seen at once (see {@linkcode OfflineLlmStats.aborted}).
   * @default {0}
   */
  latencyMs?: number;
  /**
   * Whether a client that leaves during the latency is seen. `false` makes the default reply
   * wait in the handler and go out as a plain body: about 65 instead of 157 µs of CPU per call,
   * for benchmarks where the endpoint shares the machine with what it measures; `aborted` then
   * stays 0 for default replies.
   * @default {true}
   */
  trackDisconnects?: boolean;
  /**
   * Replaces the reply to some requests (fault injection, canned answers).
   * @default {undefined} always the default reply
   */
  respond?: RespondHook;
}

/** Live counters of chat requests. */
export interface OfflineLlmStats {
  /** Chat requests received. */
  readonly requests: number;
  /** Chat requests whose reply body is not done yet. */
  readonly inFlight: number;
  /** Highest `inFlight` seen. */
  readonly maxInFlight: number;
  /**
   * Chat requests whose client went away before the reply's body was done. Counted when the
   * server waits (latency or a `respond` hook); the immediate default reply cannot be aborted.
   */
  readonly aborted: number;
}

/** A running offline endpoint. */
export interface OfflineLlm extends AsyncDisposable {
  /** Base URL ending in `/v1`, e.g. `http://127.0.0.1:41234/v1`. */
  readonly url: string;
  /** Counters, updated live. */
  readonly stats: OfflineLlmStats;
  /** Ends pending replies and stops listening. */
  close(): Promise<void>;
}

/** The one model `GET /v1/models` lists; chat replies echo the requested model. */
const OFFLINE_MODEL = "cotfit-offline";

const JSON_HEADERS = { "content-type": "application/json" } as const;
const encoder = new TextEncoder();

/**
 * Starts the offline endpoint on `hostname:port`. It serves `POST /v1/chat/completions` (the
 * OpenAI response shape, usage estimated at 4 characters a token) and `GET /v1/models`; any
 * other path gets a 404 JSON error.
 *
 * @param options Address, latency and an optional reply override.
 * @returns The running server; close it (or `await using` it) when done.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { startOfflineLlm } from "./offline_llm.ts";
 *
 * await using llm = await startOfflineLlm();
 * const response = await fetch(`${llm.url}/chat/completions`, {
 *   method: "POST",
 *   body: JSON.stringify({
 *     model: "m",
 *     messages: [{ role: "user", content: "<user_message>Why is the sky blue?</user_message>" }],
 *   }),
 * });
 * const body = await response.json();
 * assert.equal(body.choices[0].finish_reason, "stop");
 * assert.match(body.choices[0].message.content, /Why is the sky blue\?/);
 * assert.equal(llm.stats.requests, 1);
 * ```
 */
export function startOfflineLlm(options: OfflineLlmOptions = {}): Promise<OfflineLlm> {
  const { hostname = "127.0.0.1", port = 0, latencyMs = 0, respond } = options;
  const trackDisconnects = options.trackDisconnects ?? true;
  if (!(latencyMs >= 0) || !Number.isFinite(latencyMs)) {
    return Promise.reject(
      new RangeError(`Cannot start offline LLM: latencyMs must be >= 0, got ${latencyMs}`),
    );
  }
  const stats = { requests: 0, inFlight: 0, maxInFlight: 0, aborted: 0 };
  // Ends every waiting reply at once when close() runs.
  const waiting = new Set<() => void>();
  let closed = false;

  async function chat(request: Request): Promise<Response> {
    const n = ++stats.requests;
    if (++stats.inFlight > stats.maxInFlight) stats.maxInFlight = stats.inFlight;
    let body: ChatRequestBody | string;
    try {
      body = chatRequestBody(await request.json());
    } catch {
      body = "Cannot parse request body: not JSON";
    }
    if (typeof body === "string") {
      stats.inFlight--;
      return errorResponse(400, body, "invalid_request_error");
    }

    let hook: AbortController | undefined;
    let stopHook: (() => void) | undefined;
    const end = (cancelled: boolean) => {
      stats.inFlight--;
      if (stopHook) waiting.delete(stopHook);
      if (cancelled) {
        stats.aborted++;
        hook?.abort();
      }
    };
    let custom: Response | undefined;
    if (respond) {
      // The hook's signal lives until the reply body ends, so close() can end a stalled body.
      const controller = hook = new AbortController();
      stopHook = () => controller.abort();
      waiting.add(stopHook);
      if (closed) stopHook();
      try {
        custom = await respond(body, n, controller.signal, request.headers);
      } catch (error) {
        end(false);
        throw error;
      }
    }
    if (custom) {
      const stream = trackedBody(custom.body, closed ? 0 : latencyMs, waiting, end);
      const { status, statusText, headers } = custom;
      return new Response(stream, { status, statusText, headers });
    }
    const json = defaultReplyJson(body, n);
    if (latencyMs === 0 || closed) {
      // The bench path: nothing waits, so there is nothing to track.
      end(false);
      return new Response(json, { headers: JSON_HEADERS });
    }
    if (!trackDisconnects) {
      await pause(latencyMs, waiting);
      end(false);
      return new Response(json, { headers: JSON_HEADERS });
    }
    const bytes = encoder.encode(json);
    return new Response(trackedBody(bytes, latencyMs, waiting, end), {
      headers: { ...JSON_HEADERS, "content-length": String(bytes.length) },
    });
  }

  function handle(request: Request): Response | Promise<Response> {
    const { pathname } = new URL(request.url);
    if (pathname === "/v1/chat/completions") {
      return request.method === "POST" ? chat(request) : methodNotAllowed(request, "POST");
    }
    if (pathname === "/v1/models") {
      return request.method === "GET" ? modelsResponse() : methodNotAllowed(request, "GET");
    }
    return errorResponse(404, `Unknown path ${pathname}`, "invalid_request_error");
  }

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname, port, onListen() {} }, handle);
  } catch (error) {
    return Promise.reject(error);
  }
  const { hostname: host, port: boundPort } = server.addr;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${boundPort}/v1`;
  let closing: Promise<void> | undefined;
  function close(): Promise<void> {
    if (!closing) {
      closed = true;
      for (const stop of waiting) stop();
      closing = server.shutdown();
    }
    return closing;
  }
  return Promise.resolve({ url, stats, close, [Symbol.asyncDispose]: close });
}

/** Options of {@linkcode completionResponse}. */
export interface CompletionOptions {
  /** Echoed as `model`. */
  model: string;
  /** `choices[0].message.content`. */
  content: string;
  /**
   * `choices[0].finish_reason`.
   * @default {"stop"}
   */
  finishReason?: string;
  /**
   * Characters of the prompt, for the estimated `usage.prompt_tokens`.
   * @default {0}
   */
  promptChars?: number;
  /**
   * Number making the `id` unique.
   * @default {0}
   */
  n?: number;
}

/**
 * A 200 chat-completion response in OpenAI's shape; usage is estimated at 4 characters a token.
 *
 * @param options Content and metadata of the reply.
 * @returns The response.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { completionResponse } from "./offline_llm.ts";
 *
 * const response = completionResponse({ model: "m", content: "hi", finishReason: "length" });
 * const body = await response.json();
 * assert.equal(body.choices[0].message.content, "hi");
 * assert.equal(body.choices[0].finish_reason, "length");
 * ```
 */
export function completionResponse(options: CompletionOptions): Response {
  return new Response(completionJson(options), { headers: JSON_HEADERS });
}

function completionJson(options: CompletionOptions): string {
  const { model, content, finishReason = "stop", promptChars = 0, n = 0 } = options;
  const promptTokens = Math.ceil(promptChars / 4);
  const completionTokens = Math.ceil(content.length / 4);
  return JSON.stringify({
    id: `chatcmpl-offline-${n}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{
      index: 0,
      message: { role: "assistant", content },
      finish_reason: finishReason,
    }],
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    },
  });
}

/**
 * An error response in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
 *
 * @param status HTTP status.
 * @param message What went wrong.
 * @param type OpenAI's error type, e.g. `invalid_request_error`, `server_error`.
 * @param headers Extra headers, e.g. `retry-after`.
 * @returns The response.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorResponse } from "./offline_llm.ts";
 *
 * const response = errorResponse(429, "Slow down", "rate_limit_error", { "retry-after": "1" });
 * assert.equal(response.status, 429);
 * assert.equal((await response.json()).error.message, "Slow down");
 * ```
 */
export function errorResponse(
  status: number,
  message: string,
  type: string,
  headers: Record<string, string> = {},
): Response {
  const body = JSON.stringify({ error: { message, type, param: null, code: null } });
  return new Response(body, { status, headers: { ...JSON_HEADERS, ...headers } });
}

function defaultReplyJson(body: ChatRequestBody, n: number): string {
  let promptChars = 0;
  for (const message of body.messages) promptChars += message.content?.length ?? 0;
  return completionJson({
    model: body.model,
    content: offlineThought(lastUserText(body.messages)),
    promptChars,
    n,
  });
}

function lastUserText(messages: readonly ChatRequestMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const { role, content } = messages[i];
    if (role === "user" && content !== null) return content;
  }
  return messages.at(-1)?.content ?? "";
}

/** Checks the parsed body; returns it typed, or why it is not a chat request. */
function chatRequestBody(parsed: unknown): ChatRequestBody | string {
  if (!isRecord(parsed)) return "Cannot read request: the body is not a JSON object";
  const messages: unknown = parsed.messages;
  if (!Array.isArray(messages) || messages.length === 0) {
    return "Cannot read request: 'messages' must be a non-empty array";
  }
  for (const message of messages as unknown[]) {
    if (
      !isRecord(message) || typeof message.role !== "string" ||
      (typeof message.content !== "string" && message.content !== null)
    ) {
      return "Cannot read request: each message needs a string 'role' and a string 'content'";
    }
  }
  if (typeof parsed.model !== "string") return "Cannot read request: 'model' must be a string";
  return parsed as ChatRequestBody;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function modelsResponse(): Response {
  const body = JSON.stringify({
    object: "list",
    data: [{ id: OFFLINE_MODEL, object: "model", created: 0, owned_by: "cotfit" }],
  });
  return new Response(body, { headers: JSON_HEADERS });
}

function methodNotAllowed(request: Request, allowed: string): Response {
  return errorResponse(405, `Method ${request.method} not allowed`, "invalid_request_error", {
    allow: allowed,
  });
}

/** Resolves after `delayMs`, or sooner once released from `waiting` (by close()). */
function pause(delayMs: number, waiting: Set<() => void>): Promise<void> {
  return new Promise((resolve) => {
    const release = () => {
      clearTimeout(timer);
      waiting.delete(release);
      resolve();
    };
    const timer = setTimeout(release, delayMs);
    waiting.add(release);
  });
}

/**
 * A reply body that starts after `delayMs` (sooner once the wait is released from `waiting`)
 * and tells `onEnd` once whether it was delivered or the client left (`cancelled`). Waiting in
 * the body, after the headers, is what makes a client that leaves visible: Deno reports a
 * disconnect to a pending response body, but not always to `request.signal` while the handler
 * still works on a request whose body was over a few hundred bytes.
 */
function trackedBody(
  source: Uint8Array | ReadableStream<Uint8Array> | null,
  delayMs: number,
  waiting: Set<() => void>,
  onEnd: (cancelled: boolean) => void,
): ReadableStream<Uint8Array> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let release: (() => void) | undefined;
  const waited = delayMs > 0
    ? new Promise<void>((resolve) => {
      release = resolve;
      timer = setTimeout(resolve, delayMs);
      waiting.add(resolve);
    })
    : undefined;
  const reader = source instanceof ReadableStream ? source.getReader() : undefined;
  let ended = false;
  const end = (cancelled: boolean) => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    if (release) waiting.delete(release);
    onEnd(cancelled);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (waited) await waited;
        if (ended) return;
        if (!reader) {
          if (source instanceof Uint8Array) controller.enqueue(source);
          controller.close();
          return end(false);
        }
        const chunk = await reader.read();
        if (ended) return;
        if (!chunk.done) return controller.enqueue(chunk.value);
        controller.close();
        end(false);
      } catch (error) {
        end(false);
        throw error;
      }
    },
    cancel(reason) {
      end(true);
      return reader?.cancel(reason);
    },
  });
}
