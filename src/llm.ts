/**
 * One chat-completion call to an OpenAI-compatible endpoint, with a per-call deadline, abort,
 * usage and errors classified for the caller's retry loop.
 *
 * The request goes through cotfit's keep-alive HTTP/1.1 pool for `http:` endpoints on an IP
 * address or localhost (local model servers, where cotfit's own CPU per call decides
 * throughput) and through `fetch` otherwise;
 * failures are raised as the `openai` SDK's own error classes
 * (`APIError.generate` maps a status to its class, as the SDK does) and classified from them.
 * The SDK's request pipeline is not used: it cost about 175 µs of CPU per call on top of
 * `fetch`'s own 180 µs (`deno task bench`, 20,000 calls at concurrency 256), and cotfit needs
 * none of it: it sends one JSON request, owns retries and deadlines, and reads one JSON reply.
 *
 * Permissions: `--allow-net` to the endpoint.
 *
 * @module
 */
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
} from "openai/error";
import { createDeadlines, followAbort, unfollowAbort } from "./deadlines.ts";
import {
  createHttp1Pool,
  DEFAULT_MAX_RESPONSE_BYTES,
  type Http1Pool,
  HttpResponseError,
  poolSuits,
  ResponseTooLargeError,
  UnknownCodingError,
} from "./http1.ts";
import {
  abortedError,
  classify,
  detailOf,
  type ErrorContext,
  LlmError,
  timeoutError,
  tooLargeError,
  unknownCodingError,
} from "./llm_error.ts";
import { concat } from "./lines.ts";
import { bodyWriter, type RequestFields } from "./request_body.ts";
import { MAX_FIELDS, requestFix } from "./request_fix.ts";
import type { ChatMessage, TokenUsage } from "./types.ts";

/** How to reach the endpoint and what to ask of it. */
export interface ChatClientOptions {
  /**
   * Base URL of the OpenAI-compatible API, ending in `/v1` for most servers; a query (Azure's
   * `?api-version=`) is sent after `/chat/completions`.
   */
  baseURL: string;
  /**
   * Bearer token; never shown in any error message. Local servers often need none: an empty
   * string sends a placeholder token.
   */
  apiKey: string;
  /**
   * Where the key came from, named in the hint of 401/403 errors.
   * @default {"OPENAI_API_KEY"}
   */
  apiKeyEnv?: string;
  /** Model name sent with every request. */
  model: string;
  /**
   * Sampling temperature.
   * @default {undefined} the server's default
   */
  temperature?: number;
  /**
   * Cap on generated tokens, sent as `max_tokens` (understood by every compatible server), or as
   * `max_completion_tokens` once the endpoint has refused `max_tokens` (OpenAI's reasoning models).
   * @default {undefined} the server's default
   */
  maxTokens?: number;
  /**
   * Nucleus sampling.
   * @default {undefined} the server's default
   */
  topP?: number;
  /**
   * Further fields sent with every request, after the ones above (`reasoning_effort`, vLLM's
   * `chat_template_kwargs`...).
   * @default {undefined}
   */
  extraBody?: Readonly<Record<string, unknown>> | null;
  /** Deadline of one call in milliseconds, from sending the request to the end of the body. */
  timeoutMs: number;
  /**
   * The `fetch` to use, for proxies or tests; giving one implies `transport: "fetch"`.
   * @default {globalThis.fetch}
   */
  fetch?: typeof fetch;
  /**
   * Largest reply accepted, in bytes (decoded, and for the pool with its head); a larger one
   * rejects the call at once, unread past the cap.
   * @default {64 * 1024 * 1024}
   */
  maxResponseBytes?: number;
  /**
   * How requests travel. `pooled`: over cotfit's keep-alive HTTP/1.1 pool (`src/http1.ts`),
   * which costs a third of `fetch`'s CPU per call; `http:` base URLs only, no proxy. `fetch`:
   * through `fetch`, which also speaks TLS and honours `HTTP_PROXY`.
   * @default {"pooled"} when no `fetch` is given and `poolSuits(baseURL)` (an `http:` URL on an
   * IP address or localhost), else `"fetch"`
   */
  transport?: "pooled" | "fetch";
  /**
   * Told, once per change, when the client changes its requests because the endpoint refused a
   * parameter with a 400 naming it (see `requestFix` in `./request_fix.ts`).
   */
  onAdapt?: (notice: string) => void;
}

/** What one successful call returned. */
export interface ChatReply {
  /** `choices[0].message.content`; reasoning fields (`reasoning`, `reasoning_content`) are ignored. */
  content: string | null;
  /** `choices[0].finish_reason`: `stop`, `length`... */
  finishReason: string | null;
  /** The server's token counts; `null` when it sent none. */
  usage: TokenUsage | null;
  /** Wall time of the call, headers and body. */
  latencyMs: number;
  /** The parsed response body, for the debug log. */
  raw: unknown;
}

/** Per-call options of {@linkcode ChatClient.complete}. */
export interface CompleteOptions {
  /** Aborting it ends the call with an `aborted` {@linkcode LlmError}. */
  signal?: AbortSignal;
}

/** Sends chat requests; one HTTP attempt per call. Close it to release pooled connections. */
export interface ChatClient extends Disposable {
  /**
   * Asks for one completion of `messages`.
   *
   * @throws {LlmError} on any failure, classified by `kind`.
   */
  complete(messages: readonly ChatMessage[], options?: CompleteOptions): Promise<ChatReply>;
  /** Closes idle pooled connections; calls in flight finish first. */
  close(): void;
}

/**
 * Makes a client that sends one non-streaming chat request per {@linkcode ChatClient.complete}
 * call, `POST {baseURL}/chat/completions` (the query of `baseURL` kept after it) with the key as
 * a bearer token. It never retries: the caller owns retries, so it can count them, honour
 * `retryAfterMs` and also retry cut or invalid bodies.
 *
 * @param options Endpoint, model, sampling and deadline.
 * @returns A client; `close()` it (or `using` it) to release its pooled connections.
 * @throws {RangeError} when `timeoutMs` is not a positive number.
 * @throws {TypeError} when `baseURL` is not an http(s) URL, `transport` is `pooled` for an
 * `https:` one, or the key holds a line break.
 *
 * @example Usage against the offline endpoint
 * ```ts
 * import assert from "node:assert/strict";
 * import { createChatClient } from "./llm.ts";
 * import { startOfflineLlm } from "./offline_llm.ts";
 *
 * await using llm = await startOfflineLlm();
 * using client = createChatClient({
 *   baseURL: llm.url,
 *   apiKey: "sk-test",
 *   model: "offline",
 *   timeoutMs: 5_000,
 * });
 * const reply = await client.complete([{ role: "user", content: "<user_message>Hi?</user_message>" }]);
 * assert.equal(reply.finishReason, "stop");
 * assert.match(reply.content ?? "", /^<thought_process>/);
 * ```
 */
export function createChatClient(options: ChatClientOptions): ChatClient {
  const { apiKey, timeoutMs, maxResponseBytes = DEFAULT_MAX_RESPONSE_BYTES } = options;
  if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
    throw new RangeError(`Cannot create chat client: timeoutMs must be > 0, got ${timeoutMs}`);
  }
  const origin = httpOrigin(options.baseURL);
  const url = completionsURL(options.baseURL);
  const transport = options.transport ??
    (options.fetch === undefined && poolSuits(url) ? "pooled" : "fetch");
  if (transport === "pooled" && url.protocol !== "http:") {
    throw new TypeError("Cannot create chat client: the pooled transport needs an http: baseURL");
  }
  const authorization = `Bearer ${apiKey === "" ? "no-key" : apiKey}`;
  if (/[\r\n\0]/.test(authorization)) {
    throw new TypeError("Cannot create chat client: the API key holds a line break");
  }
  const headers = { "content-type": "application/json", accept: "application/json", authorization };
  const endpoint: Endpoint = {
    url: url.href,
    path: `${url.pathname}${url.search}`,
    // The pool asks for no compression: it decodes a compressed reply, but at a CPU cost.
    headers: transport === "pooled" ? { ...headers, "accept-encoding": "identity" } : headers,
    fetch: options.fetch ?? fetch,
    maxBytes: maxResponseBytes,
    pool: transport === "pooled" ? createHttp1Pool(url, { maxResponseBytes }) : undefined,
  };
  const context: ErrorContext = {
    apiKey,
    apiKeyEnv: options.apiKeyEnv ?? "OPENAI_API_KEY",
    origin,
    url: url.href,
    querySecrets: querySecrets(url),
    timeoutMs,
  };
  const deadlines = createDeadlines(timeoutMs);
  const fields: RequestFields = {
    model: options.model,
    temperature: options.temperature,
    max_tokens: options.maxTokens,
    top_p: options.topP,
    ...options.extraBody,
  };
  let requestBody = bodyWriter(fields);
  /** Rewrites the request after the endpoint refused one of its fields; false if none applies. */
  function adapt(error: unknown): boolean {
    const fix = requestFix(error, fields, options.model);
    if (fix === null) return false;
    // Calls in flight together get the same refusal: the first one changes the request.
    if (fix.notice !== null) {
      fix.apply(fields);
      requestBody = bodyWriter(fields);
      options.onAdapt?.(fix.notice);
    }
    return true;
  }

  return {
    async complete(messages, callOptions = {}) {
      const callerSignal = callOptions.signal;
      if (callerSignal?.aborted) throw abortedError();
      // A fresh controller per call: the deadline covers headers and body, and the fetch's
      // listener dies with it instead of piling up on the caller's long-lived signal.
      const controller = new AbortController();
      let timedOut = false;
      const deadline = deadlines.start(() => {
        timedOut = true;
        controller.abort();
      });
      if (callerSignal) followAbort(callerSignal, controller);
      const started = performance.now();
      const { signal } = controller;
      try {
        for (let refusals = 0;; refusals++) {
          const body = requestBody(messages);
          // The pool is awaited here, not through a helper: every async function a call awaits
          // through is kept for the whole wait, and at concurrency 1,024 scavenges copy them all.
          let reply: RawReply;
          if (endpoint.pool) {
            try {
              reply = await endpoint.pool.post(endpoint.path, endpoint.headers, body, signal);
            } catch (error) {
              throw pooledFailure(error, signal);
            }
          } else reply = await sendFetch(endpoint, body, signal);
          let json: unknown;
          try {
            json = jsonOf(reply);
          } catch (error) {
            // A refused field is dropped or renamed and the call sent again, at once (also when
            // another call has already made the change); each fix removes a field.
            if (refusals < MAX_FIELDS && adapt(error)) continue;
            throw error;
          }
          return replyFrom(json, reply.status, Math.round(performance.now() - started), context);
        }
      } catch (error) {
        if (callerSignal?.aborted) throw abortedError();
        if (timedOut) throw timeoutError(context);
        throw classify(error, context);
      } finally {
        deadline.clear();
        if (callerSignal) unfollowAbort(callerSignal, controller);
      }
    },
    close() {
      endpoint.pool?.close();
    },
    [Symbol.dispose]() {
      endpoint.pool?.close();
    },
  };
}

interface Endpoint {
  readonly url: string;
  /** Path and query of `url`, for the pool's request line. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly fetch: typeof fetch;
  /** Cap on one reply's body through `fetch` (the pool has its own). */
  readonly maxBytes: number;
  /** Set when requests go through cotfit's own HTTP/1.1 pool instead of `fetch`. */
  readonly pool?: Http1Pool;
}

/** A whole HTTP reply, however it travelled (the pool's `Http1Response` as is). */
interface RawReply {
  readonly status: number;
  /** One header's value, or `null`; the pool answers it without building `headers`. */
  header(name: string): string | null;
  /** Every header, for the SDK's error classes. */
  readonly headers: Headers;
  readonly body: string;
}

/**
 * The parsed JSON of a reply (its text when it is not typed JSON). Failures are thrown as the SDK
 * would throw them, so {@linkcode classify} treats both transports alike: an HTTP error ->
 * `APIError.generate`'s class for the status, with the body's `error`; JSON that does not parse
 * -> `SyntaxError`. (No response -> `APIConnectionError`, `APIConnectionTimeoutError` when the
 * cause says it timed out; a body cut short -> a `TypeError`: thrown by the transports.)
 */
function jsonOf(reply: RawReply): unknown {
  if (reply.status < 200 || reply.status > 299) {
    // As the SDK does: the parsed body when it is JSON (its `error` field is read), else the text.
    const json = parseOrUndefined(reply.body);
    throw APIError.generate(
      reply.status,
      typeof json === "object" && json !== null ? json : undefined,
      json ? undefined : reply.body,
      reply.headers,
    );
  }
  const mediaType = reply.header("content-type")?.split(";")[0].trim() ?? "";
  if (!mediaType.includes("application/json") && !mediaType.endsWith("+json")) return reply.body;
  if (reply.body === "" && reply.header("content-length") === "0") return undefined;
  return JSON.parse(reply.body);
}

async function sendFetch(
  endpoint: Endpoint,
  body: Uint8Array<ArrayBuffer>,
  signal: AbortSignal,
): Promise<RawReply> {
  let response: Response;
  try {
    response = await endpoint.fetch(endpoint.url, {
      method: "POST",
      headers: endpoint.headers,
      body,
      signal,
    });
  } catch (error) {
    throw connectionFailure(error, signal);
  }
  const { status, headers } = response;
  const header = (name: string) => headers.get(name);
  const length = headers.get("content-length");
  if (length === "0" || Number(length) > endpoint.maxBytes) {
    await response.body?.cancel();
    if (length !== "0") throw tooLargeError(endpoint.maxBytes);
    return { status, header, headers, body: "" };
  }
  if (!response.ok) {
    const body = await textUpTo(response, endpoint.maxBytes).catch((error) => {
      if (error instanceof LlmError) throw error;
      return error instanceof Error ? error.message : String(error);
    });
    return { status, header, headers, body };
  }
  return { status, header, headers, body: await textUpTo(response, endpoint.maxBytes) };
}

/**
 * The body as text, read no further than `maxBytes` (decoded): `text()` would hold any size, and
 * a reply of 70 MB read three times per record kept a run busy for minutes at 2.4 GB.
 */
async function textUpTo(response: Response, maxBytes: number): Promise<string> {
  if (response.body === null) return "";
  const reader = response.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    total += read.value.length;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLargeError(maxBytes);
    }
    parts.push(read.value);
  }
  return utf8.decode(parts.length === 1 ? parts[0] : concat(parts, total));
}

/** What a failed pooled request is, as `fetch` would have failed it. */
function pooledFailure(error: unknown, signal: AbortSignal): Error {
  if (error instanceof ResponseTooLargeError && !signal.aborted) {
    return tooLargeError(error.maxBytes);
  }
  if (error instanceof UnknownCodingError && !signal.aborted) {
    return unknownCodingError(error.coding);
  }
  // A response that started and broke is a cut body, as with fetch.
  if (error instanceof HttpResponseError && !signal.aborted) return error;
  return connectionFailure(error, signal);
}

/** The SDK's error for a request that got no response. */
function connectionFailure(error: unknown, signal: AbortSignal): Error {
  if (signal.aborted) return new APIUserAbortError();
  const cause = error instanceof Error ? error : new Error(String(error));
  if (/timed? ?out/i.test(`${cause} ${cause.cause ?? ""}`)) return new APIConnectionTimeoutError();
  return new APIConnectionError({ cause });
}

const utf8 = new TextDecoder();

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The reply of a 2xx `status` whose body parsed to `raw` (`undefined`: none). */
function replyFrom(
  raw: unknown,
  status: number,
  latencyMs: number,
  context: ErrorContext,
): ChatReply {
  if (!isRecord(raw)) {
    if (raw === undefined || raw === "") {
      throw new LlmError("transient", `upstream answered ${status} with no body`);
    }
    const preview = typeof raw === "string" ? `: ${detailOf(raw, context)}` : "";
    throw new LlmError(
      "transient",
      `upstream answered ${status} with a body that is not JSON${preview}`,
    );
  }
  const choice = Array.isArray(raw.choices) ? raw.choices[0] : undefined;
  if (!isRecord(choice) || !isRecord(choice.message)) {
    throw new LlmError("transient", `upstream answered ${status} without a choice message`);
  }
  return {
    content: contentOf(choice.message.content),
    finishReason: typeof choice.finish_reason === "string" ? choice.finish_reason : null,
    usage: usageOf(raw.usage),
    latencyMs,
    raw,
  };
}

/** Plain string content, or the text parts of a content-parts array some servers send. */
function contentOf(content: unknown): string | null {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return null;
  let text = "";
  for (const part of content) {
    if (isRecord(part) && part.type === "text" && typeof part.text === "string") text += part.text;
  }
  return text;
}

function usageOf(usage: unknown): TokenUsage | null {
  if (!isRecord(usage)) return null;
  const { prompt_tokens: input, completion_tokens: output } = usage;
  // A count that is no count (negative, fractional, huge) is as good as none: it is estimated.
  if (!isTokenCount(input) || !isTokenCount(output)) return null;
  return { inputTokens: input, outputTokens: output, estimated: false };
}

function isTokenCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/**
 * `/chat/completions` appended to the base URL's path (trailing slashes dropped), its query kept:
 * Azure OpenAI's base URLs carry `?api-version=`.
 */
function completionsURL(baseURL: string): URL {
  const url = new URL(baseURL);
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/chat/completions`;
  url.hash = "";
  return url;
}

/**
 * The URL's origin, for messages: a base URL may carry credentials in its user info or query.
 * Checked up front, or the SDK's TypeError at call time would pass for a transient failure.
 */
function httpOrigin(baseURL: string): string {
  const url = URL.parse(baseURL);
  if (url === null || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new TypeError("Cannot create chat client: baseURL must be an http(s) URL");
  }
  return url.origin;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The values of `url`'s query long enough to be secrets, longest first (one may hold another). */
function querySecrets(url: URL): string[] {
  const values = new Set<string>();
  for (const value of url.searchParams.values()) {
    // As a server may echo it: decoded, percent-encoded.
    values.add(value);
    values.add(encodeURIComponent(value));
  }
  // And as written in the URL (a "+" stays a "+" there).
  for (const pair of url.search.slice(1).split("&")) values.add(pair.slice(pair.indexOf("=") + 1));
  for (const value of values) if (value.length < 4) values.delete(value);
  return [...values].sort((a, b) => b.length - a.length);
}
