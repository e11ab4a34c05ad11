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
  AuthenticationError,
  InternalServerError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
} from "openai";
import { createDeadlines, followAbort, unfollowAbort } from "./deadlines.ts";
import { createHttp1Pool, type Http1Pool, HttpResponseError, poolSuits } from "./http1.ts";
import type { ChatMessage, TokenUsage } from "./types.ts";

/** How to reach the endpoint and what to ask of it. */
export interface ChatClientOptions {
  /** Base URL of the OpenAI-compatible API, ending in `/v1` for most servers. */
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
   * How requests travel. `pooled`: over cotfit's keep-alive HTTP/1.1 pool (`src/http1.ts`),
   * which costs a third of `fetch`'s CPU per call; `http:` base URLs only, no proxy. `fetch`:
   * through `fetch`, which also speaks TLS and honours `HTTP_PROXY`.
   * @default {"pooled"} when no `fetch` is given and `poolSuits(baseURL)` (an `http:` URL on an
   * IP address or localhost), else `"fetch"`
   */
  transport?: "pooled" | "fetch";
  /**
   * Told, once per change, when the client changes its requests because the endpoint refused a
   * parameter with a 400 naming it (see {@linkcode requestFix}).
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
 * What the caller should do about a failed call:
 * - `transient`: retry later (timeouts, resets, 408/409/429/5xx, invalid or cut bodies);
 * - `fatal`: stop the run, no request can succeed (401, 402, 403, 404: key, credit, model, URL);
 * - `rejected`: give up on this request only (400, 413, 422, other 4xx: e.g. context too long);
 * - `aborted`: the caller's signal fired.
 */
export type LlmErrorKind = "transient" | "fatal" | "rejected" | "aborted";

/** Extra data of an {@linkcode LlmError}. */
export interface LlmErrorOptions {
  /** HTTP status, when the server answered. */
  status?: number;
  /** The server's `retry-after-ms` / `retry-after`, in milliseconds. */
  retryAfterMs?: number;
}

/**
 * A failed chat call. The message is one line and never contains the API key.
 *
 * @example Branching on the kind
 * ```ts
 * import assert from "node:assert/strict";
 * import { LlmError } from "./llm.ts";
 *
 * const error = new LlmError("transient", "upstream answered 429 Too Many Requests", {
 *   status: 429,
 *   retryAfterMs: 1000,
 * });
 * assert.equal(error.kind, "transient");
 * assert.equal(error.retryAfterMs, 1000);
 * ```
 */
export class LlmError extends Error {
  /** What the caller should do about it. */
  readonly kind: LlmErrorKind;
  /** HTTP status, when the server answered. */
  readonly status?: number;
  /** How long the server asked us to wait before retrying. */
  readonly retryAfterMs?: number;

  /** Builds an error of `kind`; `message` must already be free of secrets. */
  constructor(kind: LlmErrorKind, message: string, options: LlmErrorOptions = {}) {
    super(message);
    this.name = "LlmError";
    this.kind = kind;
    if (options.status !== undefined) this.status = options.status;
    if (options.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
  }
}

const DETAIL_MAX_CHARS = 300;
const COMMA = 0x2c;
const CLOSE_BRACKET = 0x5d;
const CLOSE_BRACE = 0x7d;
/** Request bodies up to this size are encoded in a reused buffer. */
const SCRATCH_BYTES = 256 * 1024;
const encoder = new TextEncoder();
const RETRY_AFTER_MAX_MS = 60_000;

const REASON_PHRASES: Readonly<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  413: "Content Too Large",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/**
 * Makes a client that sends one non-streaming chat request per {@linkcode ChatClient.complete}
 * call, `POST {baseURL}/chat/completions` with the key as a bearer token. It never retries: the
 * caller owns retries, so it can count them, honour `retryAfterMs` and also retry cut or invalid
 * bodies.
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
  const { apiKey, timeoutMs } = options;
  if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
    throw new RangeError(`Cannot create chat client: timeoutMs must be > 0, got ${timeoutMs}`);
  }
  const origin = httpOrigin(options.baseURL);
  const url = new URL(`${options.baseURL.replace(/\/+$/, "")}/chat/completions`);
  const transport = options.transport ??
    (options.fetch === undefined && poolSuits(url) ? "pooled" : "fetch");
  if (transport === "pooled" && url.protocol !== "http:") {
    throw new TypeError("Cannot create chat client: the pooled transport needs an http: baseURL");
  }
  const authorization = `Bearer ${apiKey === "" ? "no-key" : apiKey}`;
  if (/[\r\n\0]/.test(authorization)) {
    throw new TypeError("Cannot create chat client: the API key holds a line break");
  }
  const endpoint: Endpoint = {
    url: url.href,
    path: `${url.pathname}${url.search}`,
    headers: { "content-type": "application/json", accept: "application/json", authorization },
    fetch: options.fetch ?? fetch,
    pool: transport === "pooled" ? createHttp1Pool(url) : undefined,
  };
  const context: ErrorContext = {
    apiKey,
    apiKeyEnv: options.apiKeyEnv ?? "OPENAI_API_KEY",
    origin,
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
          return replyFrom(json, Math.round(performance.now() - started), context);
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

/** The request's fields besides `messages`; `undefined` ones are not sent. */
interface RequestFields {
  model: string;
  temperature?: number;
  max_tokens?: number;
  max_completion_tokens?: number;
  top_p?: number;
  /** `extraBody`'s. */
  [field: string]: unknown;
}

/** How many fields {@linkcode requestFix} may change: a bound on a call's resends. */
const MAX_FIELDS = 3;

/** A change to the request that answers a refusal; `notice` is `null` when already made. */
interface RequestFix {
  readonly notice: string | null;
  apply(fields: RequestFields): void;
}

/**
 * What to change when the endpoint refused a request because of one of its fields, as OpenAI's
 * reasoning models (o-series, GPT-5) do: a 400 whose `param` (or message) names `max_tokens`
 * ("use `max_completion_tokens` instead"), or `temperature` or `top_p` ("only the default value
 * is supported"). `null` for any other error.
 */
function requestFix(error: unknown, fields: RequestFields, model: string): RequestFix | null {
  if (!(error instanceof APIError) || error.status !== 400) return null;
  const param = typeof error.param === "string" ? error.param : "";
  const message = error.message;
  const names = (field: string) =>
    param === field || new RegExp(`['"\`]${field}['"\`]`).test(message);
  if (names("max_tokens") && /max_completion_tokens/.test(message)) {
    if (fields.max_tokens === undefined) return { notice: null, apply() {} };
    return {
      notice: `the endpoint takes "max_completion_tokens" instead of "max_tokens" for model ` +
        `${model}: sending that`,
      apply(fields) {
        fields.max_completion_tokens = fields.max_tokens;
        delete fields.max_tokens;
      },
    };
  }
  for (const [field, flag] of [["temperature", "--temperature"], ["top_p", "--top-p"]] as const) {
    if (!names(field) || !/unsupported|not support|only the default/i.test(message)) continue;
    if (fields[field] === undefined) return { notice: null, apply() {} };
    return {
      notice: `model ${model} takes only its default ${field}: sending none (${flag} ` +
        `${fields[field]} is not used)`,
      apply(fields) {
        delete fields[field];
      },
    };
  }
  return null;
}

/** Options of {@linkcode retryDelay}. */
export interface RetryDelayOptions {
  /** The server's wait hint from {@linkcode LlmError.retryAfterMs}; wins over the backoff. */
  retryAfterMs?: number;
  /**
   * Delay before the first retry, before jitter.
   * @default {500}
   */
  baseMs?: number;
  /**
   * Ceiling of the exponential backoff.
   * @default {30_000}
   */
  maxMs?: number;
  /**
   * Source of jitter in [0, 1).
   * @default {Math.random}
   */
  random?: () => number;
}

/**
 * How long to wait before retry number `attempt` (1 for the first retry).
 *
 * With `retryAfterMs` the wait is what the server asked, capped at 60 s, plus up to 10% so
 * that workers told the same thing do not come back in lockstep (still capped at 60 s).
 * Otherwise it is exponential backoff with *equal jitter*: the step `min(maxMs, baseMs * 2 **
 * (attempt - 1))` is halved, one half always waited and the other randomised, so the delay lies
 * in `[step / 2, step)`: spread out, yet never a near-zero hammering retry.
 *
 * @param attempt 1-based number of the retry about to happen.
 * @param options Server hint, backoff bounds and the jitter source.
 * @returns The delay in milliseconds.
 * @throws {RangeError} when `attempt` is not an integer >= 1.
 *
 * @example Backoff bounds
 * ```ts
 * import assert from "node:assert/strict";
 * import { retryDelay } from "./llm.ts";
 *
 * assert.equal(retryDelay(1, { random: () => 0 }), 250);
 * assert.equal(retryDelay(3, { random: () => 0 }), 1_000);
 * assert.equal(retryDelay(20, { random: () => 0 }), 15_000);
 * assert.equal(retryDelay(1, { retryAfterMs: 1_000, random: () => 0 }), 1_000);
 * ```
 */
export function retryDelay(attempt: number, options: RetryDelayOptions = {}): number {
  if (!Number.isInteger(attempt) || attempt < 1) {
    throw new RangeError(
      `Cannot compute retry delay: attempt must be an integer >= 1, got ${attempt}`,
    );
  }
  const { retryAfterMs, baseMs = 500, maxMs = 30_000, random = Math.random } = options;
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) {
    const asked = Math.min(retryAfterMs, RETRY_AFTER_MAX_MS);
    return Math.min(RETRY_AFTER_MAX_MS, asked + asked * 0.1 * random());
  }
  const step = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
  return step / 2 + (step / 2) * random();
}

/**
 * Serialises `{ ...fields, messages }` as `JSON.stringify` would, straight to UTF-8, reusing the
 * bytes of frozen messages: a prompt's system message and few-shot examples are the same frozen
 * objects in every request, and stringifying and encoding those ~6 KB again cost ~100 µs per
 * call.
 */
function bodyWriter(
  fields: Readonly<RequestFields>,
): (messages: readonly ChatMessage[]) => Uint8Array<ArrayBuffer> {
  const head = encoder.encode(`${JSON.stringify(fields).slice(0, -1)},"messages":[`);
  const frozenBytes = new WeakMap<ChatMessage, Uint8Array>();
  // Encoded into one reused buffer sized for the worst case (3 bytes a UTF-16 unit): a fresh
  // worst-case buffer per call tripled what each call allocated. The result is a view of it,
  // valid until the next call; both transports copy it before their first await (`fetch` by
  // the Fetch spec, the pool into its request bytes).
  const scratch = new Uint8Array(SCRATCH_BYTES);
  return (messages) => {
    const parts: (Uint8Array | string)[] = [];
    let bound = head.length + messages.length + 1;
    for (const message of messages) {
      let part: Uint8Array | string | undefined = frozenBytes.get(message);
      if (part === undefined) {
        part = JSON.stringify(message);
        if (Object.isFrozen(message)) frozenBytes.set(message, part = encoder.encode(part));
      }
      bound += typeof part === "string" ? part.length * 3 : part.length;
      parts.push(part);
    }
    // A huge record gets a buffer of its own rather than a scratch that stays huge.
    const out = bound <= scratch.length ? scratch : new Uint8Array(bound);
    out.set(head);
    let at = head.length;
    for (let i = 0; i < parts.length; i++) {
      if (i > 0) out[at++] = COMMA;
      const part = parts[i];
      if (typeof part === "string") at += encoder.encodeInto(part, out.subarray(at)).written;
      else {
        out.set(part, at);
        at += part.length;
      }
    }
    out[at++] = CLOSE_BRACKET;
    out[at++] = CLOSE_BRACE;
    return out.subarray(0, at);
  };
}

interface Endpoint {
  readonly url: string;
  /** Path and query of `url`, for the pool's request line. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly fetch: typeof fetch;
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
  if (!response.ok) {
    const body = await response.text().catch((error) =>
      error instanceof Error ? error.message : String(error)
    );
    return { status, header, headers, body };
  }
  if (headers.get("content-length") === "0") {
    await response.body?.cancel();
    return { status, header, headers, body: "" };
  }
  return { status, header, headers, body: await response.text() };
}

/** What a failed pooled request is, as `fetch` would have failed it. */
function pooledFailure(error: unknown, signal: AbortSignal): Error {
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

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

interface ErrorContext {
  readonly apiKey: string;
  readonly apiKeyEnv: string;
  readonly origin: string;
  readonly timeoutMs: number;
}

function replyFrom(raw: unknown, latencyMs: number, context: ErrorContext): ChatReply {
  if (!isRecord(raw)) {
    const preview = typeof raw === "string" ? `: ${detailOf(raw, context)}` : "";
    throw new LlmError("transient", `upstream answered 200 with a body that is not JSON${preview}`);
  }
  const choice = Array.isArray(raw.choices) ? raw.choices[0] : undefined;
  if (!isRecord(choice) || !isRecord(choice.message)) {
    throw new LlmError("transient", "upstream answered 200 without a choice message");
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
  if (typeof input !== "number" || typeof output !== "number") return null;
  return { inputTokens: input, outputTokens: output, estimated: false };
}

function classify(error: unknown, context: ErrorContext): LlmError {
  if (error instanceof LlmError) return error;
  if (error instanceof APIUserAbortError) return abortedError();
  if (error instanceof APIConnectionTimeoutError) return timeoutError(context);
  if (error instanceof APIConnectionError) {
    return new LlmError(
      "transient",
      `upstream unreachable: ${connectionProblem(error, context)} at ${context.origin}`,
    );
  }
  if (error instanceof APIError && error.status !== undefined) {
    return statusError(error, error.status, context);
  }
  if (error instanceof SyntaxError) {
    return new LlmError(
      "transient",
      `upstream answered invalid JSON: ${detailOf(error.message, context)}`,
    );
  }
  if (error instanceof TypeError) {
    // Deno's fetch fails a body read with a TypeError when the connection drops mid-body.
    return new LlmError("transient", `upstream response cut: ${detailOf(error.message, context)}`);
  }
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return new LlmError("transient", `upstream call failed: ${detailOf(text, context)}`);
}

function statusError(error: APIError, status: number, context: ErrorContext): LlmError {
  const reason = REASON_PHRASES[status];
  const detail = detailOf(serverMessage(error), context);
  let message = `upstream answered ${status}${reason ? ` ${reason}` : ""}${
    detail ? `: ${detail}` : ""
  }`;
  const retryAfterMs = retryAfterOf(error.headers);
  const data = retryAfterMs === undefined ? { status } : { status, retryAfterMs };
  if (
    error instanceof RateLimitError || error instanceof InternalServerError || status === 408 ||
    status === 409
  ) {
    return new LlmError("transient", message, data);
  }
  if (error instanceof AuthenticationError || error instanceof PermissionDeniedError) {
    message += context.apiKey === ""
      ? `; no API key is set (env var ${context.apiKeyEnv})`
      : `; check the API key (env var ${context.apiKeyEnv})`;
    return new LlmError("fatal", message, data);
  }
  if (error instanceof NotFoundError) {
    message += `; check the model name and the base URL ${context.origin}`;
    return new LlmError("fatal", message, data);
  }
  if (status === 402) {
    // Out of credit: every further request would fail the same way.
    return new LlmError("fatal", message, data);
  }
  return new LlmError("rejected", message, data);
}

/** The server's own words: `error.message` of its JSON body, or the raw body text. */
function serverMessage(error: APIError): string {
  const body = error.error;
  if (isRecord(body) && typeof body.message === "string") return body.message;
  if (body !== undefined && body !== null) return JSON.stringify(body);
  const prefix = `${error.status} `;
  const text = error.message.startsWith(prefix)
    ? error.message.slice(prefix.length)
    : error.message;
  return text === "status code (no body)" ? "" : text;
}

function connectionProblem(error: APIConnectionError, context: ErrorContext): string {
  let text = "";
  let current: unknown = error.cause;
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    text += ` ${current.message}`;
    current = current.cause;
  }
  if (/refused/i.test(text)) return "connection refused";
  if (/reset|broken pipe|connection closed/i.test(text)) return "connection reset";
  if (/dns|lookup|name resolution|not known|no such host/i.test(text)) return "host not found";
  if (/timed? ?out/i.test(text)) return "connection timed out";
  if (/certificate|tls|ssl/i.test(text)) return "TLS failure";
  return detailOf(text, context) || "connection failed";
}

/** Milliseconds from `retry-after-ms`, else `retry-after` (seconds or an HTTP date). */
function retryAfterOf(headers: Headers | undefined): number | undefined {
  const millis = headers?.get("retry-after-ms");
  if (millis) {
    const value = Number(millis);
    if (Number.isFinite(value) && value >= 0) return value;
  }
  const after = headers?.get("retry-after");
  if (!after) return undefined;
  const seconds = Number(after);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
  const date = Date.parse(after);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** One line, secrets masked, cut to {@linkcode DETAIL_MAX_CHARS}. */
function detailOf(text: string, context: ErrorContext): string {
  let line = text;
  if (context.apiKey !== "") line = line.replaceAll(context.apiKey, "***");
  line = line.replace(/\b(Bearer|Basic)\s+[^\s"',;]+/gi, "$1 ***").replace(/\s+/g, " ").trim();
  return line.length > DETAIL_MAX_CHARS ? `${line.slice(0, DETAIL_MAX_CHARS)}…` : line;
}

function abortedError(): LlmError {
  return new LlmError("aborted", "request aborted by the caller");
}

function timeoutError(context: ErrorContext): LlmError {
  return new LlmError(
    "transient",
    `upstream timed out after ${context.timeoutMs} ms at ${context.origin}`,
  );
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
