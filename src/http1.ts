/**
 * A keep-alive HTTP/1.1 connection pool for one `http:` origin: one request at a time per
 * connection, whole response bodies read into memory.
 *
 * It exists for speed: against a local model server at high concurrency, Deno's `fetch` cost
 * about 226 µs of CPU per call and `node:http` 186 µs, where this pool costs about 80 µs
 * (`deno task bench`, concurrency 1024). It speaks only what a chat-completion call needs:
 * `Content-Length`, chunked and read-until-close bodies, `Connection: close`, 1xx interim
 * responses, trailers, and gzip, deflate and br bodies from a server that compresses although
 * asked for `identity`. TLS and proxies stay with `fetch`.
 *
 * Permissions: `--allow-net` to the origin.
 *
 * @module
 */

import {
  type Exchange,
  FORBIDDEN_IN_HEADER,
  type Http1Response,
  ResponseReader,
} from "./http1_response.ts";
import { createLimiter } from "./pool.ts";

export { type Http1Response, HttpResponseError, ResponseTooLargeError } from "./http1_response.ts";
export { UnknownCodingError } from "./content_coding.ts";

/** Options of {@linkcode createHttp1Pool}. */
export interface Http1PoolOptions {
  /**
   * An idle connection older than this is closed instead of reused: servers drop idle
   * connections (uvicorn, which serves vLLM, after 5 s), and a request sent on one that the
   * server is closing may fail.
   * @default {4_000}
   */
  idleMs?: number;
  /**
   * Largest response (headers and body) accepted, in bytes.
   * @default {64 * 1024 * 1024}
   */
  maxResponseBytes?: number;
  /**
   * Connections being opened at once. A burst of SYNs past the server's accept backlog is
   * dropped and retried by TCP a second later: 1,024 calls starting together took 0.5 s on
   * average, 1 s at worst, until opening was capped.
   * @default {32}
   */
  maxConnecting?: number;
}

/** Sends requests over pooled connections to one origin. */
export interface Http1Pool extends Disposable {
  /**
   * Sends `POST path` with `headers` and `body` and reads the whole response. `body` is copied
   * before this returns its promise, so the caller may reuse its buffer right away.
   *
   * @throws {ResponseTooLargeError} when the response, or its body decoded, is over
   * `maxResponseBytes`.
   * @throws {UnknownCodingError} when the body's `Content-Encoding` is none of gzip, deflate, br.
   * @throws {HttpResponseError} when the response breaks HTTP/1.1 or is cut short.
   * @throws {DOMException} `AbortError` when `signal` aborts.
   * @throws {Error} the network error (`Deno.errors.ConnectionRefused`...) when no response
   * started.
   */
  post(
    path: string,
    headers: Readonly<Record<string, string>>,
    body: string | Uint8Array,
    signal?: AbortSignal,
  ): Promise<Http1Response>;
  /** Closes the idle connections; calls in flight close theirs when they end. */
  close(): void;
}
const READ_CHUNK_BYTES = 8 * 1024;
/** Default of {@linkcode Http1PoolOptions.maxResponseBytes}. */
export const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
// The WHATWG URL parser has already normalised IPv4 hosts to dotted decimal.
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;

const encoder = new TextEncoder();

/**
 * Makes a pool for `origin` (an `http:` URL; its path is ignored).
 *
 * @param origin The server, e.g. `http://127.0.0.1:8000`.
 * @param options Idle lifetime and response size cap.
 * @returns The pool; `close()` it (or `using` it) when done.
 * @throws {TypeError} when `origin` is not an `http:` URL.
 *
 * @example Usage against the offline endpoint
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHttp1Pool } from "./http1.ts";
 * import { startOfflineLlm } from "./offline_llm.ts";
 *
 * await using llm = await startOfflineLlm();
 * using pool = createHttp1Pool(llm.url);
 * const body = JSON.stringify({ model: "m", messages: [{ role: "user", content: "Hi?" }] });
 * const response = await pool.post("/v1/chat/completions", { "content-type": "application/json" }, body);
 * assert.equal(response.status, 200);
 * assert.equal(JSON.parse(response.body).choices[0].finish_reason, "stop");
 * ```
 */
export function createHttp1Pool(origin: string | URL, options: Http1PoolOptions = {}): Http1Pool {
  const url = new URL(origin);
  if (url.protocol !== "http:") {
    throw new TypeError(`Cannot create HTTP/1.1 pool: ${url.protocol} is not http:`);
  }
  const {
    idleMs = 4_000,
    maxResponseBytes = DEFAULT_MAX_RESPONSE_BYTES,
    maxConnecting = 32,
  } = options;
  const connecting = createLimiter(maxConnecting);
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port === "" ? 80 : Number(url.port);
  const hostHeader = url.host;
  // Most recently used last: reusing the freshest connection lets the others age out.
  const idle: Connection[] = [];
  let closed = false;

  function takeIdle(): Connection | undefined {
    const now = performance.now();
    for (let entry = idle.pop(); entry !== undefined; entry = idle.pop()) {
      if (now - entry.since < idleMs) return entry;
      closeQuietly(entry.conn);
    }
    return undefined;
  }

  // `localhost` may resolve to ::1 first while the server listens on 127.0.0.1 only (vLLM's
  // default), and Deno.connect tries the first address alone: the other loopback is tried next.
  const candidates = isLocalhost(hostname) ? [hostname, "127.0.0.1", "::1"] : [hostname];
  async function connect(): Promise<Deno.TcpConn> {
    let firstError: unknown;
    for (const candidate of candidates) {
      try {
        return await Deno.connect({ hostname: candidate, port });
      } catch (error) {
        firstError ??= error;
        if (!(error instanceof Deno.errors.ConnectionRefused)) break;
      }
    }
    throw firstError;
  }

  async function open(): Promise<Connection> {
    const conn = await connecting.run(connect);
    // One write per request, but a reply to an unacknowledged segment must not wait for it.
    conn.setNoDelay(true);
    // Kept with the connection: a fresh buffer per call cost a GC-visible allocation per call.
    return { conn, buffer: new Uint8Array(READ_CHUNK_BYTES), since: 0, outgoing: null };
  }

  return {
    async post(path, headers, body, signal) {
      signal?.throwIfAborted();
      let connection = takeIdle();
      let stale = connection !== undefined;
      // Copied before any await: the caller may reuse the body's buffer once this returns.
      const request = encodeRequest(hostHeader, path, headers, body, connection?.outgoing ?? null);
      connection ??= await open();
      keepOutgoing(connection, request);
      let result: Exchange;
      // Written out in this one function rather than in helpers: every async function a call
      // awaits through is kept (a generator, a promise, closures) for the whole ~200 ms wait,
      // and at concurrency 1,024 each scavenge copies them all.
      for (;;) {
        const { conn } = connection;
        const reader = new ResponseReader(conn, connection.buffer, maxResponseBytes);
        const onAbort = signal && (() => closeQuietly(conn));
        if (onAbort) signal.addEventListener("abort", onAbort, { once: true });
        try {
          let written = await conn.write(request);
          while (written < request.length) written += await conn.write(request.subarray(written));
          result = await reader.read();
          break;
        } catch (error) {
          closeQuietly(conn);
          if (signal?.aborted) throw signal.reason ?? new DOMException("Aborted", "AbortError");
          // The server may have closed a reused connection just as the request went out: nothing
          // came back, so the request is sent once more, on a fresh connection.
          if (!stale || reader.started) throw error;
          stale = false;
          connection = await open();
          keepOutgoing(connection, request);
        } finally {
          if (onAbort) signal.removeEventListener("abort", onAbort);
        }
      }
      if (result.reusable && !closed) {
        connection.since = performance.now();
        idle.push(connection);
      } else {
        closeQuietly(connection.conn);
      }
      return result.response;
    },
    close() {
      closed = true;
      for (const entry of idle.splice(0)) closeQuietly(entry.conn);
    },
    [Symbol.dispose]() {
      this.close();
    },
  };
}

/**
 * Whether the pool reaches `url` as `fetch` would: an `http:` URL whose host is an IP address or
 * `localhost`. For other names `fetch` tries every address the name resolves to, and the pool
 * (`Deno.connect`) only the first.
 *
 * @param url The endpoint.
 * @returns `true` when the pool suits it.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { poolSuits } from "./http1.ts";
 *
 * assert.equal(poolSuits(new URL("http://127.0.0.1:8000/v1")), true);
 * assert.equal(poolSuits(new URL("http://localhost:8000/v1")), true);
 * assert.equal(poolSuits(new URL("http://[::1]:8000/v1")), true);
 * assert.equal(poolSuits(new URL("http://gpu-box:8000/v1")), false);
 * assert.equal(poolSuits(new URL("https://127.0.0.1/v1")), false);
 * ```
 */
export function poolSuits(url: URL): boolean {
  if (url.protocol !== "http:") return false;
  const host = url.hostname;
  return isLocalhost(host) || host.startsWith("[") || IPV4.test(host);
}

function isLocalhost(hostname: string): boolean {
  return hostname === "localhost" || hostname.endsWith(".localhost");
}

interface Connection {
  readonly conn: Deno.TcpConn;
  /** Read buffer for its responses; one that grows for a large response is not kept. */
  readonly buffer: Uint8Array;
  /** When it went idle, from `performance.now()`. */
  since: number;
  /**
   * The buffer its last request was encoded into, reused for its next one: allocating an
   * `ArrayBuffer` per request cost 1 to 7 µs of the one JavaScript thread.
   */
  outgoing: Uint8Array | null;
}

/** Requests past this size get a buffer of their own that is not kept with the connection. */
const MAX_KEPT_REQUEST_BYTES = 256 * 1024;

function keepOutgoing(connection: Connection, request: Uint8Array): void {
  const { buffer } = request;
  if (connection.outgoing?.buffer !== buffer && buffer.byteLength <= MAX_KEPT_REQUEST_BYTES) {
    connection.outgoing = new Uint8Array(buffer);
  }
}

/** The request's bytes, in `reuse` when it is large enough, else in a new buffer with slack. */
function encodeRequest(
  host: string,
  path: string,
  headers: Readonly<Record<string, string>>,
  body: string | Uint8Array,
  reuse: Uint8Array | null,
): Uint8Array<ArrayBuffer> {
  const payload = typeof body === "string" ? encoder.encode(body) : body;
  let head = `POST ${path} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const name in headers) {
    const value = headers[name];
    if (FORBIDDEN_IN_HEADER.test(name) || FORBIDDEN_IN_HEADER.test(value)) {
      throw new TypeError(`Cannot send request: header ${JSON.stringify(name)} holds a line break`);
    }
    head += `${name}: ${value}\r\n`;
  }
  head += `content-length: ${payload.length}\r\n\r\n`;
  const needed = head.length * 3 + payload.length;
  const request = reuse !== null && reuse.length >= needed
    ? reuse as Uint8Array<ArrayBuffer>
    : new Uint8Array(needed + (needed >> 2));
  const { written } = encoder.encodeInto(head, request);
  request.set(payload, written);
  return request.subarray(0, written + payload.length);
}

function closeQuietly(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch {
    // Already closed, by an abort or an earlier failure.
  }
}
