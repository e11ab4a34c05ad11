/**
 * UTF-16 text, as Windows PowerShell 5 writes a redirected file, turned into the UTF-8 the rest
 * of cotfit reads. Decoding is strict: text that is not valid UTF-16 is reported, never replaced.
 *
 * @module
 */

import type { InputFault } from "./types.ts";

/** Bytes decoded at once; see `utf16ToUtf8`. */
const PIECE_BYTES = 1024;

/** A UTF-16 byte order, from the byte order mark. */
export type Utf16 = "utf-16le" | "utf-16be";

/**
 * The UTF-16 byte order a byte order mark at the start names.
 *
 * @param head The input's first bytes.
 * @returns The byte order, or `null` when there is no UTF-16 byte order mark.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { utf16Bom } from "./utf16.ts";
 *
 * assert.equal(utf16Bom(new Uint8Array([0xff, 0xfe, 0x7b, 0x00])), "utf-16le");
 * assert.equal(utf16Bom(new Uint8Array([0xfe, 0xff, 0x00, 0x7b])), "utf-16be");
 * assert.equal(utf16Bom(new TextEncoder().encode("{}")), null);
 * ```
 */
export function utf16Bom(head: Uint8Array): Utf16 | null {
  if (head[0] === 0xff && head[1] === 0xfe) return "utf-16le";
  if (head[0] === 0xfe && head[1] === 0xff) return "utf-16be";
  return null;
}

/**
 * Transcodes UTF-16 bytes (its byte order mark dropped) to UTF-8. Text that is not valid UTF-16
 * ends the output after what was decoded before it, and `onFault` is told why; the rest of the
 * input is read and dropped.
 *
 * @param encoding The byte order.
 * @param onFault Told why the rest of the input cannot be read.
 * @returns The transcoding stream.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { utf16ToUtf8 } from "./utf16.ts";
 *
 * const bytes = new Uint8Array([0xff, 0xfe, 0x7b, 0x00, 0x7d, 0x00, 0x0a, 0x00]);
 * const utf8 = ReadableStream.from([bytes]).pipeThrough(utf16ToUtf8("utf-16le", () => {}));
 * assert.equal(await new Response(utf8).text(), "{}\n");
 * ```
 */
export function utf16ToUtf8(
  encoding: Utf16,
  onFault: (fault: InputFault) => void,
): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder(encoding, { fatal: true });
  const encoder = new TextEncoder();
  let failed = false;
  const emit = (text: string, controller: TransformStreamDefaultController<Uint8Array>) => {
    if (text !== "") controller.enqueue(encoder.encode(text));
  };
  const fail = () => {
    failed = true;
    onFault({
      reason: `the input is UTF-16 (${encoding.slice(-2).toUpperCase()}) and breaks off into ` +
        "bytes that are not valid UTF-16: nothing after them could be read",
      cut: true,
    });
  };
  return new TransformStream({
    transform(chunk, controller) {
      // In pieces: bad bytes lose the text of the piece they are in, not a whole read's.
      for (let at = 0; at < chunk.length && !failed; at += PIECE_BYTES) {
        try {
          emit(decoder.decode(chunk.subarray(at, at + PIECE_BYTES), { stream: true }), controller);
        } catch {
          fail();
        }
      }
    },
    flush(controller) {
      if (failed) return;
      try {
        emit(decoder.decode(), controller);
      } catch {
        fail();
      }
    },
  });
}
