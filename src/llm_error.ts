/**
 * What a failed chat call is, for the caller's retry loop: {@linkcode LlmError} and its kind
 * (retry, stop the run, give up on the record, or aborted), built from the `openai` SDK's error
 * classes, which both of cotfit's transports raise.
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
} from "openai/error";
import { cutText } from "./text_cut.ts";

/**
 * What the caller should do about a failed call:
 * - `transient`: retry later (timeouts, resets, 408/409/429/5xx, invalid or cut bodies);
 * - `fatal`: stop the run, no request can succeed (401, 402, 403, 404: key, credit, model, URL;
 *   3xx: a redirect, which cotfit's pool does not follow);
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
 * import { LlmError } from "./llm_error.ts";
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

/** What error messages may name, and what they must hide. */
export interface ErrorContext {
  readonly apiKey: string;
  readonly apiKeyEnv: string;
  readonly origin: string;
  /** The URL requests go to, that a redirect's Location is read against; not shown itself. */
  readonly url: string;
  /**
   * Values of the URL's query, masked like the key: some gateways take their key there
   * (`?key=...`, `?api-key=...`), and a server may echo its URL back in an error.
   */
  readonly querySecrets?: readonly string[];
  readonly timeoutMs: number;
}

const DETAIL_MAX_CHARS = 300;

const REASON_PHRASES: Readonly<Record<number, string>> = {
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
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
 * The {@linkcode LlmError} for any failure of a call: the SDK's error classes (both transports
 * fail as the SDK would), a `SyntaxError` for a body that is not JSON, a `TypeError` for one cut
 * short. The message names the endpoint's origin, never the key.
 *
 * @param error What the call threw.
 * @param context The endpoint, the key to mask and the timeout.
 * @returns The classified error.
 *
 * @example What the caller does next, by status
 * ```ts
 * import assert from "node:assert/strict";
 * import { APIError } from "openai/error";
 * import { classify } from "./llm_error.ts";
 *
 * const context = {
 *   apiKey: "sk-secret",
 *   apiKeyEnv: "OPENAI_API_KEY",
 *   origin: "http://x",
 *   url: "http://x/v1/chat/completions",
 *   timeoutMs: 1,
 * };
 * const status = (code: number, message: string) =>
 *   classify(APIError.generate(code, { error: { message } }, undefined, new Headers()), context);
 * assert.equal(status(429, "slow down").kind, "transient");
 * assert.equal(status(400, "context too long").kind, "rejected");
 * const refused = status(401, "bad key sk-secret");
 * assert.equal(refused.kind, "fatal");
 * assert.ok(!refused.message.includes("sk-secret"));
 * assert.equal(classify(new SyntaxError("Unexpected token <"), context).kind, "transient");
 * ```
 */
export function classify(error: unknown, context: ErrorContext): LlmError {
  if (error instanceof LlmError) return error;
  if (error instanceof APIUserAbortError) return abortedError();
  if (error instanceof APIConnectionTimeoutError) return timeoutError(context);
  if (error instanceof APIConnectionError) {
    const problem = connectionProblem(error, context);
    // This process's open-file limit, not the upstream: no retry helps while calls hold it.
    if (problem === TOO_MANY_FILES) {
      return new LlmError(
        "fatal",
        "too many open files: every call in flight holds a connection; lower --concurrency or " +
          "raise this process's open-file limit (ulimit -n)",
      );
    }
    return new LlmError("transient", `upstream unreachable: ${problem} at ${context.origin}`);
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
  if (status >= 300 && status < 400) {
    // Its body, if any, is a page for browsers: where it points is what matters.
    const redirect = `upstream answered ${status}${reason ? ` ${reason}` : ""}`;
    return new LlmError("fatal", `${redirect}${redirectHint(error.headers, context)}`, data);
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

/**
 * Where a redirect points, and the base URL that reaches it directly. cotfit's pool does not
 * follow redirects: every call would pay the extra round trip, and a cross-origin one would need
 * a connection of its own; `fetch` follows those it can, so a 3xx reaching here has no use.
 */
function redirectHint(headers: Headers | undefined, context: ErrorContext): string {
  const location = headers?.get("location");
  const target = location ? URL.parse(location, context.url) : null;
  if (target === null) return ` without a Location; check the base URL ${context.origin}`;
  target.username = "";
  target.password = "";
  target.hash = "";
  let hint = "set --base-url to the API's address";
  const suffix = "/chat/completions";
  if (/^https?:$/.test(target.protocol) && target.pathname.endsWith(suffix)) {
    const path = target.pathname.slice(0, -suffix.length).replace(/\/+$/, "");
    hint = `use --base-url ${target.origin}${path}${target.search}`;
  }
  return ` ${detailOf(`to ${target.href}; cotfit does not follow redirects: ${hint}`, context)}`;
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

const TOO_MANY_FILES = "too many open files";

function connectionProblem(error: APIConnectionError, context: ErrorContext): string {
  let text = "";
  let current: unknown = error.cause;
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    text += ` ${current.message}`;
    current = current.cause;
  }
  if (/too many open files|os error 24\b/i.test(text)) return TOO_MANY_FILES;
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

/**
 * One line, secrets masked, cut to {@linkcode DETAIL_MAX_CHARS}.
 *
 * @param text A server's or a library's words.
 * @param context Holds the key to mask.
 * @returns The line, safe to show.
 */
export function detailOf(text: string, context: ErrorContext): string {
  let line = text;
  if (context.apiKey !== "") line = line.replaceAll(context.apiKey, "***");
  for (const secret of context.querySecrets ?? []) line = line.replaceAll(secret, "***");
  line = line.replace(/\b(Bearer|Basic)\s+[^\s"',;]+/gi, "$1 ***").replace(/\s+/g, " ").trim();
  return cutText(line, DETAIL_MAX_CHARS, "…");
}

/**
 * The error for a reply over the cap on one reply: the record is given up at once, as the same
 * request would bring the same reply (status-less, so not blamed on a refusing server).
 *
 * @param maxBytes The cap.
 * @returns The `rejected` error naming the cap.
 */
export function tooLargeError(maxBytes: number): LlmError {
  const MiB = 1024 * 1024;
  const cap = maxBytes % MiB === 0 ? `${maxBytes / MiB} MiB` : `${maxBytes} bytes`;
  return new LlmError(
    "rejected",
    `upstream reply over ${cap}, cotfit's cap on one reply: not read further`,
  );
}

/**
 * The error for a reply in a `Content-Encoding` cotfit cannot decode: the record is given up at
 * once, as retrying would bring the same coding.
 *
 * @param coding The coding, as the server named it.
 * @returns The `rejected` error naming it.
 */
export function unknownCodingError(coding: string): LlmError {
  return new LlmError(
    "rejected",
    `upstream reply in content coding ${
      JSON.stringify(coding.slice(0, 40))
    }, which cotfit does not decode (it asked for identity)`,
  );
}

/** The error for a call whose caller aborted it. */
export function abortedError(): LlmError {
  return new LlmError("aborted", "request aborted by the caller");
}

/** The error for a call that passed its deadline. */
export function timeoutError(context: ErrorContext): LlmError {
  return new LlmError(
    "transient",
    `upstream timed out after ${context.timeoutMs} ms at ${context.origin}`,
  );
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
