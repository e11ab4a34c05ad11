/**
 * A keep-alive HTTP/1.1 connection pool for one `http:` origin: one request at a time per
 * connection, whole response bodies read into memory.
 *
 * It exists for speed: against a local model server at high concurrency, Deno's `fetch` cost
 * about 226 µs of CPU per call and `node:http` 186 µs, where this pool costs about 80 µs
 * (`deno task bench`, concurrency 1024). It speaks only what a chat-completion call needs:
 * `Content-Length`, chunked and read-until-close bodies, `Connection: close`, 1xx interim
 * responses and trailers. TLS and proxies stay with `fetch`.
 *
 * Permissions: `--allow-net` to the origin.
 *
 * @module
 */

import { createLimiter } from "./pool.ts";

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

/** A whole response. */
export interface Http1Response {
  readonly status: number;
  /** The header fields, as a `Headers` built on first use. */
  readonly headers: Headers;
  /**
   * One field's value as `Headers.get` gives it (repeated fields joined by ", "), or `null`;
   * without building `headers`, which cost ~1 µs and a dozen objects per response.
   */
  header(name: string): string | null;
  /** The body decoded as UTF-8 (invalid sequences replaced, as `Response.text()` does). */
  readonly body: string;
}

/** Sends requests over pooled connections to one origin. */
export interface Http1Pool extends Disposable {
  /**
   * Sends `POST path` with `headers` and `body` and reads the whole response. `body` is copied
   * before this returns its promise, so the caller may reuse its buffer right away.
   *
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

/**
 * A response that started but broke HTTP/1.1 framing or ended early. A `TypeError`, as
 * `fetch` fails a body that is cut short.
 */
export class HttpResponseError extends TypeError {
  /** Builds the error; `message` names what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "HttpResponseError";
  }
}

const CR = 13;
const LF = 10;
const HEADER_MAX_BYTES = 64 * 1024;
const READ_CHUNK_BYTES = 8 * 1024;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/;
const CHUNK_SIZE = /^[0-9a-fA-F]{1,15}$/;
const FORBIDDEN_IN_HEADER = /[\r\n\0]/;
/** RFC 9110 `token`: what `Headers` accepts as a field name. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// The WHATWG URL parser has already normalised IPv4 hosts to dotted decimal.
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder();

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
  const { idleMs = 4_000, maxResponseBytes = 64 * 1024 * 1024, maxConnecting = 32 } = options;
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

interface Exchange {
  readonly response: Http1Response;
  /** The connection may carry another request. */
  readonly reusable: boolean;
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

/** Reads one response from a connection, growing one buffer as bytes arrive. */
class ResponseReader {
  /** Some bytes of the response arrived: a failure is no longer a stale connection's. */
  started = false;
  #conn: Deno.TcpConn;
  #max: number;
  #buffer: Uint8Array;
  #length = 0;
  #ended = false;

  constructor(conn: Deno.TcpConn, buffer: Uint8Array, maxBytes: number) {
    this.#conn = conn;
    this.#buffer = buffer;
    this.#max = maxBytes;
  }

  /**
   * Reads the response. The waits of a plain response (its head and a `content-length` body)
   * are awaited here, not in helpers: see `post`.
   */
  async read(): Promise<Exchange> {
    let start = 0;
    for (;;) {
      let from = start;
      let headEnd = findHeadEnd(this.#buffer, from, this.#length);
      while (headEnd < 0) {
        from = Math.max(start, this.#length - 3);
        if (this.#length - start > HEADER_MAX_BYTES) {
          throw new HttpResponseError(`Cannot read response: head over ${HEADER_MAX_BYTES} bytes`);
        }
        if (this.#ended || !this.#took(await this.#conn.read(this.#room(0)))) {
          throw this.started
            ? new HttpResponseError("Cannot read response: connection closed in the head")
            : new Deno.errors.ConnectionReset("connection closed before any response");
        }
        headEnd = findHeadEnd(this.#buffer, from, this.#length);
      }
      const head = parseHead(latin1.decode(this.#buffer.subarray(start, headEnd)));
      const bodyStart = headEnd + 4;
      if (head.status >= 100 && head.status < 200 && head.status !== 101) {
        start = bodyStart; // An interim response (100 Continue, 103 Early Hints): the real one follows.
        continue;
      }
      if (head.status === 101) throw new HttpResponseError("Cannot read response: 101 upgrade");
      const { status, fields, contentLength } = head;
      if (head.chunked || contentLength === undefined || status === 204 || status === 304) {
        return await this.#otherBody(head, bodyStart);
      }
      const end = bodyStart + contentLength;
      if (end > this.#max) throw tooLarge(this.#max);
      while (this.#length < end) {
        if (this.#ended || !this.#took(await this.#conn.read(this.#room(end)))) {
          throw new HttpResponseError(
            `Cannot read response: connection closed after ${
              this.#length - bodyStart
            } of ${contentLength} body bytes`,
          );
        }
      }
      return {
        response: new Response1(status, fields, utf8.decode(this.#buffer.subarray(bodyStart, end))),
        reusable: head.keepAlive && this.#length === end && !this.#ended,
      };
    }
  }

  /** A body without `content-length`: none (204, 304), chunked, or up to the end of the stream. */
  async #otherBody(head: Head, bodyStart: number): Promise<Exchange> {
    const { status, fields } = head;
    let body: Uint8Array;
    let reusable = head.keepAlive;
    if (status === 204 || status === 304) {
      body = new Uint8Array(0);
    } else if (head.chunked) {
      body = await this.#chunked(bodyStart);
    } else {
      while (await this.#fill());
      body = this.#buffer.subarray(bodyStart, this.#length);
      reusable = false;
    }
    return {
      response: new Response1(status, fields, utf8.decode(body)),
      reusable: reusable && !this.#ended,
    };
  }

  async #chunked(start: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let total = 0;
    let at = start;
    for (;;) {
      const lineEnd = await this.#lineEnd(at);
      const sizeText = latin1.decode(this.#buffer.subarray(at, lineEnd)).split(";")[0].trim();
      if (!CHUNK_SIZE.test(sizeText)) {
        throw new HttpResponseError(
          `Cannot read response: bad chunk size ${JSON.stringify(sizeText)}`,
        );
      }
      const size = parseInt(sizeText, 16);
      at = lineEnd + 2;
      if (size === 0) break;
      total += size;
      if (total > this.#max) throw tooLarge(this.#max);
      while (this.#length < at + size + 2) {
        if (!await this.#fill(at + size + 2)) {
          throw new HttpResponseError("Cannot read response: connection closed in a chunk");
        }
      }
      // Copied: the buffer may move as it grows.
      parts.push(this.#buffer.slice(at, at + size));
      if (this.#buffer[at + size] !== CR || this.#buffer[at + size + 1] !== LF) {
        throw new HttpResponseError("Cannot read response: chunk not followed by CRLF");
      }
      at += size + 2;
    }
    // Trailer fields, if any, end with a blank line.
    for (let lineEnd = await this.#lineEnd(at); lineEnd !== at; lineEnd = await this.#lineEnd(at)) {
      at = lineEnd + 2;
    }
    at += 2;
    if (this.#length !== at) this.#ended = true; // Bytes after the response: do not reuse.
    const body = new Uint8Array(total);
    let offset = 0;
    for (const part of parts) {
      body.set(part, offset);
      offset += part.length;
    }
    return body;
  }

  /** Offset of the next `\r\n` at or after `from`. */
  async #lineEnd(from: number): Promise<number> {
    for (;;) {
      const cr = this.#buffer.subarray(0, this.#length).indexOf(CR, from);
      if (cr >= 0 && cr + 1 < this.#length) {
        if (this.#buffer[cr + 1] !== LF) {
          throw new HttpResponseError("Cannot read response: bare CR");
        }
        return cr;
      }
      if (this.#length - from > HEADER_MAX_BYTES) {
        throw new HttpResponseError("Cannot read response: chunk line too long");
      }
      if (!await this.#fill()) {
        throw new HttpResponseError("Cannot read response: connection closed in a chunk line");
      }
    }
  }

  /** Reads more bytes, making room for at least `want` in all; `false` at the end of the stream. */
  async #fill(want = 0): Promise<boolean> {
    return !this.#ended && this.#took(await this.#conn.read(this.#room(want)));
  }

  /**
   * Where the next read goes: the free end of the buffer, which doubles as needed to hold `want`
   * bytes in all (at least one more), up to the response cap.
   */
  #room(want: number): Uint8Array {
    const needed = Math.max(want, this.#length + 1);
    if (needed > this.#buffer.length || this.#length === this.#buffer.length) {
      let size = this.#buffer.length * 2;
      while (size < needed) size *= 2;
      if (this.#length >= this.#max) throw tooLarge(this.#max);
      const grown = new Uint8Array(Math.min(size, this.#max + 1));
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
    }
    return this.#buffer.subarray(this.#length);
  }

  /** Counts the bytes a read brought; `false` when it found the end of the stream. */
  #took(count: number | null): boolean {
    if (count === null) {
      this.#ended = true;
      return false;
    }
    this.started = true;
    this.#length += count;
    return true;
  }
}

interface Head {
  readonly status: number;
  /** Names (lowercased) and values, alternating. */
  readonly fields: readonly string[];
  readonly chunked: boolean;
  readonly contentLength?: number;
  readonly keepAlive: boolean;
}

function findHeadEnd(buffer: Uint8Array, from: number, length: number): number {
  const view = buffer.subarray(0, length);
  for (let cr = view.indexOf(CR, from); cr >= 0 && cr + 3 < length; cr = view.indexOf(CR, cr + 1)) {
    if (view[cr + 1] === LF && view[cr + 2] === CR && view[cr + 3] === LF) return cr;
  }
  return -1;
}

function parseHead(text: string): Head {
  const lines = text.split("\r\n");
  const match = STATUS_LINE.exec(lines[0]);
  if (!match) {
    throw new HttpResponseError(
      `Cannot read response: bad status line ${JSON.stringify(lines[0].slice(0, 80))}`,
    );
  }
  const fields: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    if (colon <= 0) {
      throw new HttpResponseError(
        `Cannot read response: bad header line ${JSON.stringify(line.slice(0, 80))}`,
      );
    }
    // What `Headers` would refuse, refused here too, though it is built only on demand.
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (!HEADER_NAME.test(name) || FORBIDDEN_IN_HEADER.test(value)) {
      throw new HttpResponseError(
        `Cannot read response: bad header ${JSON.stringify(line.slice(0, 80))}`,
      );
    }
    fields.push(name.toLowerCase(), value);
  }
  const status = Number(match[2]);
  const connection = fieldValue(fields, "connection")?.toLowerCase() ?? "";
  const keepAlive = match[1] === "1"
    ? !/\bclose\b/.test(connection)
    : /\bkeep-alive\b/.test(connection);
  const transfer = fieldValue(fields, "transfer-encoding");
  if (transfer !== null) {
    // A final coding other than chunked is delimited by the end of the connection.
    const chunked = /(?:^|,)\s*chunked\s*$/i.test(transfer);
    return { status, fields, chunked, keepAlive: keepAlive && chunked };
  }
  const length = fieldValue(fields, "content-length");
  if (length === null) return { status, fields, chunked: false, keepAlive };
  // Repeated identical values arrive joined by ", ".
  const values = new Set(length.split(",").map((value) => value.trim()));
  const [only] = values;
  if (values.size !== 1 || !/^\d{1,15}$/.test(only)) {
    throw new HttpResponseError(
      `Cannot read response: bad content-length ${JSON.stringify(length)}`,
    );
  }
  return { status, fields, chunked: false, contentLength: Number(only), keepAlive };
}

/** The value of field `name` (lowercase) in `fields`, repeated ones joined by ", ". */
function fieldValue(fields: readonly string[], name: string): string | null {
  let value: string | null = null;
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === name) value = value === null ? fields[i + 1] : `${value}, ${fields[i + 1]}`;
  }
  return value;
}

class Response1 implements Http1Response {
  #headers: Headers | undefined;

  constructor(
    readonly status: number,
    readonly fields: readonly string[],
    readonly body: string,
  ) {}

  get headers(): Headers {
    if (this.#headers === undefined) {
      const headers = new Headers();
      for (let i = 0; i < this.fields.length; i += 2) {
        headers.append(this.fields[i], this.fields[i + 1]);
      }
      this.#headers = headers;
    }
    return this.#headers;
  }

  header(name: string): string | null {
    return fieldValue(this.fields, name.toLowerCase());
  }
}

function tooLarge(max: number): HttpResponseError {
  return new HttpResponseError(`Cannot read response: over ${max} bytes`);
}
