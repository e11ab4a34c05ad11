/**
 * Reading one HTTP/1.1 response from a connection of cotfit's pool: its head, then a body framed
 * by `Content-Length`, chunked encoding or the connection's close, into one growing buffer, and
 * decoded when a `Content-Encoding` says it is compressed (`src/content_coding.ts`).
 *
 * @module
 */

import { decodeContent, UnknownCodingError } from "./content_coding.ts";

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

/**
 * A response over the pool's cap. Not a cut: the same request would get the same reply, so it is
 * not worth another download.
 */
export class ResponseTooLargeError extends HttpResponseError {
  /** Builds the error for a response over `maxBytes`. */
  constructor(readonly maxBytes: number) {
    super(`Cannot read response: over ${maxBytes} bytes`);
    this.name = "ResponseTooLargeError";
  }
}

const CR = 13;
const LF = 10;
const HEADER_MAX_BYTES = 64 * 1024;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/;
const CHUNK_SIZE = /^[0-9a-fA-F]{1,15}$/;
/** What no header field may hold: a line break in one could smuggle a header or a request. */
export const FORBIDDEN_IN_HEADER = /[\r\n\0]/;
/** RFC 9110 `token`: what `Headers` accepts as a field name. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder();

/** A response read, and whether its connection may be used again. */
export interface Exchange {
  readonly response: Http1Response;
  /** The connection may carry another request. */
  readonly reusable: boolean;
}

/** Reads one response from a connection, growing one buffer as bytes arrive. */
export class ResponseReader {
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
      const { status, fields, contentLength, coding } = head;
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
      const body = this.#buffer.subarray(bodyStart, end);
      return {
        response: new Response1(
          status,
          fields,
          utf8.decode(coding === null ? body : decoded(body, coding, this.#max)),
        ),
        reusable: head.keepAlive && this.#length === end && !this.#ended,
      };
    }
  }

  /** A body without `content-length`: none (204, 304), chunked, or up to the end of the stream. */
  async #otherBody(head: Head, bodyStart: number): Promise<Exchange> {
    const { status, fields, coding } = head;
    let body: Uint8Array;
    let reusable = head.keepAlive;
    if (status === 204 || status === 304) {
      body = new Uint8Array(0);
    } else if (head.chunked) {
      body = await this.#chunked(bodyStart);
    } else {
      while (await this.#fill());
      if (this.#length > this.#max) throw tooLarge(this.#max);
      body = this.#buffer.subarray(bodyStart, this.#length);
      reusable = false;
    }
    return {
      response: new Response1(
        status,
        fields,
        utf8.decode(coding === null ? body : decoded(body, coding, this.#max)),
      ),
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
    // Also when the buffer has room: a cap below its size still holds.
    if (this.#length > this.#max) throw tooLarge(this.#max);
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
  /** `Content-Encoding`, when the server sent one. */
  readonly coding: string | null;
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
  const coding = fieldValue(fields, "content-encoding");
  const transfer = fieldValue(fields, "transfer-encoding");
  if (transfer !== null) {
    // A final coding other than chunked is delimited by the end of the connection.
    const chunked = /(?:^|,)\s*chunked\s*$/i.test(transfer);
    return { status, fields, chunked, keepAlive: keepAlive && chunked, coding };
  }
  const length = fieldValue(fields, "content-length");
  if (length === null) return { status, fields, chunked: false, keepAlive, coding };
  // Repeated identical values arrive joined by ", ".
  const values = new Set(length.split(",").map((value) => value.trim()));
  const [only] = values;
  if (values.size !== 1 || !/^\d{1,15}$/.test(only)) {
    throw new HttpResponseError(
      `Cannot read response: bad content-length ${JSON.stringify(length)}`,
    );
  }
  return { status, fields, chunked: false, contentLength: Number(only), keepAlive, coding };
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

/** `body` decoded from `coding`, its failures as the pool's: over the cap, or broken. */
function decoded(body: Uint8Array, coding: string, max: number): Uint8Array {
  try {
    return decodeContent(body, coding, max);
  } catch (error) {
    if (error instanceof UnknownCodingError) throw error;
    if (error instanceof RangeError) throw tooLarge(max);
    throw new HttpResponseError(
      `Cannot read response: ${coding} body does not decode: ${(error as Error).message}`,
    );
  }
}

function tooLarge(max: number): ResponseTooLargeError {
  return new ResponseTooLargeError(max);
}
