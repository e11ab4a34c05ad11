/**
 * Undoing a whole response body's `Content-Encoding`, for cotfit's HTTP/1.1 pool: it asks for
 * `identity`, but a server or proxy may compress anyway, and `fetch` would decode such a reply.
 * Replies are whole and bounded by the pool's cap, so the synchronous `node:zlib` calls do.
 *
 * @module
 */

import { brotliDecompressSync, gunzipSync, inflateRawSync, inflateSync } from "node:zlib";

/** A `Content-Encoding` that cotfit does not decode (`zstd`, `compress`...). */
export class UnknownCodingError extends Error {
  /** Builds the error naming `coding`. */
  constructor(readonly coding: string) {
    super(`Cannot read response: content coding ${JSON.stringify(coding)} is not supported`);
    this.name = "UnknownCodingError";
  }
}

/**
 * Decodes `body` coded as `codings` says (a `Content-Encoding` value: `gzip`, `x-gzip`,
 * `deflate` as zlib or raw data, `br`, `identity`, or several, undone last to first).
 *
 * @param body The body as received.
 * @param codings The `Content-Encoding` field's value.
 * @param maxBytes The most the decoded body may hold.
 * @returns The decoded body (`body` itself when nothing is to undo).
 * @throws {UnknownCodingError} for a coding not listed above.
 * @throws {RangeError} when the decoded body would be over `maxBytes`.
 * @throws {Error} zlib's, when the data does not decode.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { gzipSync } from "node:zlib";
 * import { decodeContent } from "./content_coding.ts";
 *
 * const body = decodeContent(gzipSync('{"a":1}'), "gzip", 1024);
 * assert.equal(new TextDecoder().decode(body), '{"a":1}');
 * ```
 */
export function decodeContent(body: Uint8Array, codings: string, maxBytes: number): Uint8Array {
  // An empty body (a 204, a HEAD's) has no coded data to undo.
  if (body.length === 0) return body;
  const options = { maxOutputLength: maxBytes };
  const list = codings.split(",");
  let bytes = body;
  for (let i = list.length - 1; i >= 0; i--) {
    const coding = list[i].trim().toLowerCase();
    if (coding === "gzip" || coding === "x-gzip") bytes = gunzipSync(bytes, options);
    else if (coding === "deflate") {
      // Meant as zlib data (RFC 9110), but some servers send raw deflate, as browsers accept.
      bytes = isZlib(bytes) ? inflateSync(bytes, options) : inflateRawSync(bytes, options);
    } else if (coding === "br") bytes = brotliDecompressSync(bytes, options);
    else if (coding !== "identity" && coding !== "") throw new UnknownCodingError(coding);
  }
  return bytes;
}

/** Whether `bytes` start with a zlib header: deflate method, and a check that is a multiple of 31. */
function isZlib(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && (bytes[0] & 0x0f) === 8 && ((bytes[0] << 8) | bytes[1]) % 31 === 0;
}
