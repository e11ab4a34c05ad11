/**
 * Compressed input, decompressed while it streams: a 1 GB `.jsonl.gz` takes no more memory than
 * a small file. Input that starts with gzip's magic bytes is decompressed whatever its name or
 * content type says (no JSON text starts with byte 0x1f); a server body may also name gzip,
 * deflate or brotli in `Content-Encoding`. Other compressed formats, known by their magic bytes,
 * are reported, not read as text line by line. UTF-16 text, known by its byte order mark, is
 * transcoded to UTF-8 (`src/utf16.ts`).
 *
 * A stream that cannot be decompressed to its end (cut short, corrupt, trailing junk) is not an
 * error of the stream: what came before it is kept, and the failure is handed to `onFault`, so
 * the caller can account for the rest of the input as one reject. Gzip is read member by member
 * (`src/gunzip.ts`), so junk after its end costs none of the text before.
 *
 * @module
 */

import { createBrotliDecompress, createInflate } from "node:zlib";
import { gunzipStream, untilCodec } from "./gunzip.ts";
import { concat } from "./lines.ts";
import type { InputFault } from "./types.ts";
import { utf16Bom, utf16ToUtf8 } from "./utf16.ts";

/** A `Content-Encoding` cotfit decompresses. */
export type ContentCoding = "gzip" | "deflate" | "br";

/** Options of {@linkcode decompressStream}. */
export interface DecompressOptions {
  /**
   * How the bytes are encoded: `"sniff"` decompresses gzip and transcodes UTF-16 when the input
   * starts with their magic bytes or byte order mark, and passes anything else through.
   *
   * @default {"sniff"}
   */
  coding?: ContentCoding | "sniff";
  /**
   * Told why the rest of the input cannot be read (a compressed format cotfit does not read,
   * compressed data that breaks off or is followed by junk); the output then ends with what was
   * read before.
   */
  onFault(fault: InputFault): void;
}

/** How to turn Parquet, what the Hugging Face hub serves most datasets as, into JSONL. */
export const PARQUET_TO_JSONL = `duckdb -c "COPY 'in.parquet' TO 'out.jsonl'"`;

/** Formats cotfit does not read, by their magic bytes, with what to do instead. */
const OTHER_FORMATS: readonly { magic: readonly number[]; what: string; instead: string }[] = [
  { magic: [0x28, 0xb5, 0x2f, 0xfd], what: "zstd-compressed", instead: "decompress it (zstd -d)" },
  {
    magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
    what: "xz-compressed",
    instead: "decompress it (xz -d)",
  },
  { magic: [0x42, 0x5a, 0x68], what: "bzip2-compressed", instead: "decompress it (bzip2 -d)" },
  { magic: [0x50, 0x4b, 0x03, 0x04], what: "zip-compressed", instead: "decompress it (unzip)" },
  {
    magic: [0x50, 0x41, 0x52, 0x31],
    what: "a Parquet file",
    instead: `convert it to JSONL (${PARQUET_TO_JSONL})`,
  },
];
const GZIP_MAGIC = [0x1f, 0x8b];
/** Every start of input that is not plain UTF-8 text. */
const KNOWN_STARTS: readonly (readonly number[])[] = [
  GZIP_MAGIC,
  [0xff, 0xfe], // UTF-16 LE byte order mark
  [0xfe, 0xff], // UTF-16 BE
  ...OTHER_FORMATS.map((format) => format.magic),
];
/** Compressed bytes handed to the codec at once; see `decoderFor`. */
const CODEC_PIECE_BYTES = 4 * 1024;

/**
 * Decompresses a byte stream as its options say; see the module doc.
 *
 * @param options The coding (or sniffing) and where a fault is reported.
 * @returns A transform from the input's bytes to plain bytes.
 *
 * @example A gzip-compressed input is read as its text
 * ```ts
 * import assert from "node:assert/strict";
 * import { gzipSync } from "node:zlib";
 * import { decompressStream } from "./decompress.ts";
 *
 * const faults: unknown[] = [];
 * const plain = ReadableStream.from([gzipSync('{"a":1}\n')])
 *   .pipeThrough(decompressStream({ onFault: (fault) => faults.push(fault) }));
 * assert.equal(await new Response(plain).text(), '{"a":1}\n');
 * assert.deepEqual(faults, []);
 * ```
 */
export function decompressStream(
  options: DecompressOptions,
): ReadableWritablePair<Uint8Array, Uint8Array> {
  const { coding = "sniff", onFault } = options;
  if (coding === "gzip") return gunzipStream(onFault);
  if (coding !== "sniff") return decoderFor(coding, codecFault(coding, onFault));
  const entry = new TransformStream<Uint8Array, Uint8Array>();
  const input = entry.readable.getReader();
  // Plain input is read from `input` itself: one hop more than no decompressor, not two.
  let decoded: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let sniffed = false;
  const readable = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!sniffed) {
        sniffed = true;
        const { head, ended } = await readHead(input);
        const utf16 = utf16Bom(head);
        if (startsWith(head, GZIP_MAGIC)) {
          const rest = prepend(head, ended, input);
          decoded = rest.pipeThrough(gunzipStream(onFault)).getReader();
        } else if (utf16 !== null) {
          decoded = prepend(head, ended, input).pipeThrough(utf16ToUtf8(utf16, onFault))
            .getReader();
        } else {
          const other = OTHER_FORMATS.find((format) => startsWith(head, format.magic));
          if (other) {
            onFault({
              reason: `the input is ${other.what}, which cotfit does not read: ` +
                `${other.instead} first; JSONL and JSON, plain or gzip-compressed, are read as ` +
                "they are",
              cut: false,
            });
            await input.cancel().catch(() => {});
            return controller.close();
          }
          if (head.length > 0) controller.enqueue(head);
          if (ended) controller.close();
          if (head.length > 0 || ended) return;
        }
      }
      const { done, value } = await (decoded ?? input).read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return (decoded ?? input).cancel(reason);
    },
  }, { highWaterMark: 1 });
  return { writable: entry.writable, readable };
}

/**
 * Whether an input's first bytes call for {@linkcode decompressStream}: a compressed format it
 * decodes or reports, or UTF-16 text; plain UTF-8 known as such needs no such stage at all.
 *
 * @param head The input's first bytes (six are enough).
 * @returns `true` for gzip, zstd, xz, bzip2, zip or Parquet magic bytes, or a UTF-16 byte order
 *   mark.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { gzipSync } from "node:zlib";
 * import { needsDecoding } from "./decompress.ts";
 *
 * assert.equal(needsDecoding(gzipSync("{}")), true);
 * assert.equal(needsDecoding(new Uint8Array([0xff, 0xfe, 0x7b, 0x00])), true);
 * assert.equal(needsDecoding(new TextEncoder().encode('{"a": 1}')), false);
 * ```
 */
export function needsDecoding(head: Uint8Array): boolean {
  return KNOWN_STARTS.some((magic) => startsWith(head, magic));
}

/**
 * Reads until the first bytes tell the format: most input is told by its first byte (`{`, `[`, a
 * space, a BOM), so a server's first line is not held back for more bytes to arrive.
 */
async function readHead(
  input: ReadableStreamDefaultReader<Uint8Array>,
): Promise<{ head: Uint8Array; ended: boolean }> {
  const parts: Uint8Array[] = [];
  let length = 0;
  do {
    const { done, value } = await input.read();
    if (done) return { head: concat(parts, length), ended: true };
    parts.push(value);
    length += value.length;
  } while (mayStillBeMagic(concat(parts, length)));
  return { head: concat(parts, length), ended: false };
}

/** Whether `head` is too short to tell: it begins some format's magic bytes without all of them. */
function mayStillBeMagic(head: Uint8Array): boolean {
  return KNOWN_STARTS.some((magic) =>
    head.length < magic.length && head.every((byte, i) => byte === magic[i])
  );
}

/** `head`, then the rest of `input`, as one stream. */
function prepend(
  head: Uint8Array,
  ended: boolean,
  input: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (head.length > 0) controller.enqueue(head);
      if (ended) controller.close();
    },
    async pull(controller) {
      const { done, value } = await input.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return input.cancel(reason);
    },
  }, { highWaterMark: 1 });
}

/** The fault a codec's failure is reported as, by how much it decoded before. */
function codecFault(
  coding: "deflate" | "br",
  onFault: (fault: InputFault) => void,
): (error: Error, decodedBytes: number) => void {
  return (error, decodedBytes) =>
    onFault({
      reason: decodedBytes === 0
        ? `the input is not valid ${coding} data (${error.message})`
        : `the ${coding} data breaks off (${error.message}): nothing after it could be read`,
      cut: true,
    });
}

/**
 * A node:zlib decompressor of a server body's deflate or brotli coding as a stream pair. Not
 * `Duplex.toWeb`: when the codec fails, that errors its readable side, which drops the output
 * still queued, and the lines decoded before a corrupt tail must still be read. Here a failure
 * ends the output after what was decoded, and the caller is told through `onCodecError`, with how
 * many bytes were decoded before.
 */
function decoderFor(
  coding: "deflate" | "br",
  onCodecError: (error: Error, decodedBytes: number) => void,
): ReadableWritablePair<Uint8Array, Uint8Array> {
  const codec = coding === "deflate" ? createInflate() : createBrotliDecompress();
  let failed: Error | null = null;
  let decodedBytes = 0;
  // Set when the input itself failed (or the reader left): that is not the codec's fault.
  let aborted: { reason: unknown } | null = null;
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      // Once closed or errored, late events of the codec are ignored.
      let done = false;
      codec.on("data", (chunk: Uint8Array) => {
        if (done) return;
        decodedBytes += chunk.byteLength;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        // Paused, the codec stops decoding once its own buffer fills: a small input chunk that
        // inflates a thousandfold is not held whole.
        if ((controller.desiredSize ?? 0) <= 0) codec.pause();
      });
      codec.on("end", () => {
        if (!done) controller.close();
        done = true;
      });
      codec.on("error", (error: Error) => {
        failed = error;
        if (done) return;
        done = true;
        if (aborted) return controller.error(aborted.reason);
        onCodecError(error, decodedBytes);
        controller.close();
      });
    },
    pull() {
      codec.resume();
    },
    cancel(reason) {
      aborted = { reason };
      codec.destroy();
    },
  }, { highWaterMark: 4 });
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      // In pieces: a failure drops the output of the piece it happens in, so a corrupt tail
      // costs at most one piece's lines, not a whole read's.
      for (let at = 0; at < chunk.length && failed === null; at += CODEC_PIECE_BYTES) {
        // Nobody reads any more (`--limit` reached, a client gone): stop the input, or a
        // destroyed codec, which never calls back, would hold the writer forever.
        if (aborted) throw aborted.reason;
        const piece = chunk.subarray(at, at + CODEC_PIECE_BYTES);
        await untilCodec(codec, (done) => codec.write(piece, done));
      }
    },
    close() {
      if (failed || aborted) return;
      return untilCodec(codec, (done) => codec.end(done));
    },
    abort(reason) {
      aborted = { reason };
      codec.destroy(reason instanceof Error ? reason : new Error(String(reason)));
    },
  });
  return { writable, readable };
}

function startsWith(bytes: Uint8Array, magic: readonly number[]): boolean {
  return bytes.length >= magic.length && magic.every((byte, i) => bytes[i] === byte);
}
