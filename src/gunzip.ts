/**
 * Gzip decompression that reads each member's header and trailer itself, so it knows where the
 * gzip data ends. node:zlib's Gunzip (Deno's polyfill) fails on any bytes after the last member,
 * zero padding included, and a failure drops the text it decoded in the same write: lines that
 * `zcat` prints were lost. Here the header is parsed as RFC 1952 lays it out, the deflate data
 * goes to `createInflateRaw`, whose `bytesWritten` tells where that data ends and the 8-byte
 * trailer starts, and the trailer's CRC-32 and length are checked as gzip checks them.
 *
 * @module
 */

import type { Transform } from "node:stream";
import { crc32, createInflateRaw, type InflateRaw } from "node:zlib";
import type { InputFault } from "./types.ts";

/**
 * Compressed bytes handed to the inflater at once, most and fewest. The output of one write is
 * queued whole before the reader is waited for, so pieces shrink as the data inflates more (a run
 * of zeros inflates a thousandfold), to keep one write's text near {@linkcode WRITE_TEXT_BYTES}.
 */
const MAX_PIECE_BYTES = 16 * 1024;
const MIN_PIECE_BYTES = 256;
const WRITE_TEXT_BYTES = 256 * 1024;
/**
 * The inflater's output chunk. Corrupt data drops the chunk being filled when it is found (Node's
 * zlib pushes only full chunks before an error): at most this much text that zlib did decode is
 * lost. Larger chunks bought no measurable speed.
 */
const OUTPUT_CHUNK_BYTES = 16 * 1024;
const TRAILER_BYTES = 8;
const FIXED_HEADER_BYTES = 10;
const MAGIC_1 = 0x1f;
const MAGIC_2 = 0x8b;
const DEFLATE_METHOD = 8;
const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;
const RESERVED_FLAGS = 0xe0;

/**
 * Decompresses gzip data, one member after another (what pigz, bgzip and `cat a.gz b.gz` write),
 * as it streams. What cannot be read is handed to `onFault` once, and the output ends after the
 * text decoded before it (all of it, but for up to 16 KiB before a corrupt byte):
 * - data that breaks off (a cut download) or is corrupt: `cut`, the text may stop mid-record;
 * - bytes after the last member that do not start another one: not `cut`, the text is whole;
 *   only zero bytes, padding as tape and block devices leave, are ignored, as gzip ignores them.
 *
 * @param onFault Told once why the rest of the input cannot be read.
 * @returns A transform from gzip bytes to the bytes they compress.
 *
 * @example Junk after the data costs no line
 * ```ts
 * import assert from "node:assert/strict";
 * import { gzipSync } from "node:zlib";
 * import { gunzipStream } from "./gunzip.ts";
 *
 * const faults: unknown[] = [];
 * const bytes = new Uint8Array([...gzipSync('{"a":1}\n'), ...new TextEncoder().encode("junk")]);
 * const text = ReadableStream.from([bytes]).pipeThrough(gunzipStream((f) => faults.push(f)));
 * assert.equal(await new Response(text).text(), '{"a":1}\n');
 * assert.deepEqual(faults, [{
 *   reason: "the gzip data ends after 28 bytes; the 4 bytes after it are not gzip data and " +
 *     "were not read",
 *   cut: false,
 * }]);
 * ```
 */
export function gunzipStream(
  onFault: (fault: InputFault) => void,
): ReadableWritablePair<Uint8Array, Uint8Array> {
  const members = new GzipMembers(onFault);
  return { readable: members.readable, writable: members.writable };
}

/**
 * Starts a node:zlib codec's `write` or `end` with `done` as its callback and resolves when it is
 * called, or when the codec fails or closes: the callback does not come once it has.
 *
 * @param codec A node:zlib stream.
 * @param start Calls the codec, passing `done` as the callback.
 * @returns Resolves once the codec has called back, failed or closed.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { createInflateRaw } from "node:zlib";
 * import { untilCodec } from "./gunzip.ts";
 *
 * const codec = createInflateRaw();
 * codec.on("error", () => {});
 * await untilCodec(codec, (done) => codec.write(new Uint8Array([0xff, 0xff]), done));
 * assert.equal(codec.destroyed, true); // failed: resolved all the same
 * await untilCodec(codec, (done) => codec.end(done)); // destroyed: at once
 * ```
 */
export function untilCodec(codec: Transform, start: (done: () => void) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    if (codec.destroyed) return resolve();
    const settle = () => {
      codec.off("error", settle);
      codec.off("close", settle);
      resolve();
    };
    codec.on("error", settle);
    codec.on("close", settle);
    start(settle);
  });
}

type Stage = "header" | "deflate" | "trailer" | "junk" | "done";

class GzipMembers {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly #onFault: (fault: InputFault) => void;
  #out!: ReadableStreamDefaultController<Uint8Array>;
  #stage: Stage = "header";
  /** The member being read, from 1. */
  #member = 0;
  #header = new MemberHeader();
  /** Input bytes before the chunk being written. */
  #base = 0;
  /** Where the last whole member ends. */
  #dataEnd = 0;
  #codec: InflateRaw | null = null;
  #codecError: Error | null = null;
  /** CRC-32 and size of the member's text so far, for its trailer. */
  #crc = 0;
  #size = 0;
  readonly #trailer = new Uint8Array(TRAILER_BYTES);
  #trailerBytes = 0;
  #junkIsZeros = true;
  #pieceBytes = MAX_PIECE_BYTES;
  /** Set when the input failed or the reader left: not a fault of the data. */
  #aborted: { reason: unknown } | null = null;
  /** Resolves the write waiting for the reader to take output. */
  #wake: (() => void) | null = null;

  constructor(onFault: (fault: InputFault) => void) {
    this.#onFault = onFault;
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#out = controller;
      },
      pull: () => this.#wakeWriter(),
      cancel: (reason) => this.#abort(reason),
    }, { highWaterMark: 4 });
    this.writable = new WritableStream<Uint8Array>({
      write: (chunk) => this.#write(chunk),
      close: () => this.#close(),
      abort: (reason) => this.#abort(reason),
    });
  }

  async #write(chunk: Uint8Array): Promise<void> {
    let at = 0;
    while (at < chunk.length) {
      // Nobody reads any more (`--limit` reached, a client gone): stop the input.
      if (this.#aborted) throw this.#aborted.reason;
      switch (this.#stage) {
        case "header":
          at = this.#readHeader(chunk, at);
          break;
        case "deflate":
          at = await this.#inflate(chunk, at);
          break;
        case "trailer":
          at = this.#readTrailer(chunk, at);
          break;
        case "junk":
          if (this.#junkIsZeros) this.#junkIsZeros = isZeros(chunk.subarray(at));
          at = chunk.length;
          break;
        case "done":
          // After a fault the rest is read and dropped, so the input ends as it should.
          at = chunk.length;
      }
    }
    this.#base += chunk.length;
  }

  #close(): void {
    const end = this.#base;
    switch (this.#stage) {
      case "header":
        if (this.#header.size === 0) break; // after a whole member, or empty input
        return this.#breaksOff(end);
      case "deflate":
      case "trailer":
        return this.#breaksOff(end);
      case "junk":
        if (this.#junkIsZeros) break;
        return this.#report({
          reason: `the gzip data ends after ${this.#dataEnd} bytes; the ${
            bytes(end - this.#dataEnd)
          } after it are not gzip data and were not read`,
          cut: false,
        });
      case "done":
        return;
    }
    this.#stage = "done";
    this.#out.close();
  }

  #abort(reason: unknown): void {
    this.#aborted = { reason };
    this.#codec?.destroy();
    this.#wakeWriter();
  }

  #readHeader(chunk: Uint8Array, at: number): number {
    const header = this.#header;
    if (header.size === 0) {
      // After a whole member, bytes that cannot start another are what gzip calls trailing
      // garbage; before any member, the input is no gzip data at all.
      if (this.#member > 0 && chunk[at] !== MAGIC_1) {
        this.#stage = "junk";
        return at;
      }
      this.#member++;
    }
    const end = header.read(chunk, at);
    if (end === -1) return chunk.length;
    if (end === -2) {
      if (this.#member > 1 && header.notGzip) {
        this.#stage = "junk";
        this.#junkIsZeros = false;
        return at;
      }
      this.#fail(
        this.#member === 1
          ? `the input is not valid gzip data (${header.error})`
          : `the gzip data is corrupt after ${this.#dataEnd} bytes (${header.error} in the header ` +
            `of member ${this.#member}): nothing after it could be read`,
      );
      return chunk.length;
    }
    this.#startMember();
    return end;
  }

  #startMember(): void {
    this.#stage = "deflate";
    this.#crc = 0;
    this.#size = 0;
    this.#codecError = null;
    const codec = createInflateRaw({ chunkSize: OUTPUT_CHUNK_BYTES });
    codec.on("data", (chunk: Uint8Array) => {
      if (this.#stage === "done" || this.#aborted) return;
      this.#crc = crc32(chunk, this.#crc);
      this.#size += chunk.byteLength;
      this.#out.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    });
    codec.on("error", (error: Error) => {
      this.#codecError ??= error;
    });
    this.#codec = codec;
  }

  async #inflate(chunk: Uint8Array, at: number): Promise<number> {
    if ((this.#out.desiredSize ?? 0) <= 0) {
      await new Promise<void>((resolve) => this.#wake = resolve);
      if (this.#aborted) throw this.#aborted.reason;
    }
    const codec = this.#codec!;
    const piece = chunk.subarray(at, at + this.#pieceBytes);
    const before = codec.bytesWritten;
    const sizeBefore = this.#size;
    await untilCodec(codec, (done) => codec.write(piece, done));
    if (this.#aborted) throw this.#aborted.reason;
    if (this.#codecError) {
      const from = this.#base + at;
      this.#fail(
        `the gzip data is corrupt between bytes ${from} and ${from + piece.length} ` +
          `(${this.#codecError.message}${this.#inMember()}): nothing after it could be read`,
      );
      return chunk.length;
    }
    // The inflater takes every byte it is given until its data ends: then it takes no more.
    const consumed = codec.bytesWritten - before;
    const ratio = (this.#size - sizeBefore) / Math.max(consumed, 1);
    this.#pieceBytes = Math.min(
      MAX_PIECE_BYTES,
      Math.max(MIN_PIECE_BYTES, Math.floor(WRITE_TEXT_BYTES / Math.max(ratio, 1))),
    );
    if (consumed < piece.length) {
      // Its text is all out: Node's zlib emits each output chunk before the write callback.
      codec.destroy();
      this.#codec = null;
      this.#stage = "trailer";
    }
    return at + consumed;
  }

  #readTrailer(chunk: Uint8Array, at: number): number {
    const take = Math.min(TRAILER_BYTES - this.#trailerBytes, chunk.length - at);
    this.#trailer.set(chunk.subarray(at, at + take), this.#trailerBytes);
    this.#trailerBytes += take;
    at += take;
    if (this.#trailerBytes < TRAILER_BYTES) return at;
    const trailer = new DataView(this.#trailer.buffer);
    const check = trailer.getUint32(0, true) !== this.#crc
      ? "incorrect data check"
      : trailer.getUint32(4, true) !== this.#size % 2 ** 32
      ? "incorrect length check"
      : null;
    if (check !== null) {
      this.#fail(
        `the gzip data is corrupt after ${this.#base + at} bytes (${check}${this.#inMember()}): ` +
          "nothing after it could be read",
      );
      return chunk.length;
    }
    this.#dataEnd = this.#base + at;
    this.#trailerBytes = 0;
    this.#header = new MemberHeader();
    this.#stage = "header";
    return at;
  }

  #breaksOff(end: number): void {
    this.#fail(
      `the gzip data breaks off after ${end} bytes (unexpected end of file${this.#inMember()}): ` +
        "nothing after it could be read",
    );
  }

  /** Which member, when there are several. */
  #inMember(): string {
    return this.#member > 1 ? ` in member ${this.#member}` : "";
  }

  /** The data broke off or went bad: the text before may stop mid-record. */
  #fail(reason: string): void {
    this.#report({ reason, cut: true });
  }

  /** Reports the fault and ends the output; the rest of the input is dropped. */
  #report(fault: InputFault): void {
    this.#stage = "done";
    this.#codec?.destroy();
    this.#codec = null;
    if (this.#aborted) return;
    this.#onFault(fault);
    this.#out.close();
  }

  #wakeWriter(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

type HeaderField = "fixed" | "extraLength" | "extra" | "name" | "comment" | "headerCrc" | "done";
const FIELD_ORDER: readonly HeaderField[] = [
  "fixed",
  "extraLength",
  "extra",
  "name",
  "comment",
  "headerCrc",
  "done",
];

/** A member's header (RFC 1952, 2.3), read across chunks. */
class MemberHeader {
  /** Bytes read so far. */
  size = 0;
  /** Why the bytes are no gzip header, once {@linkcode read} returned -2. */
  error = "";
  /** The error is in gzip's magic bytes: these bytes are not gzip data at all. */
  notGzip = false;
  #field: HeaderField = "fixed";
  readonly #bytes = new Uint8Array(FIXED_HEADER_BYTES);
  #fieldBytes = 0;
  #flags = 0;
  #extraLeft = 0;
  /** CRC-32 of the header so far, for a header CRC (FHCRC). */
  #crc = 0;

  /**
   * Reads on from `bytes[from]`: the index where the deflate data starts, -1 when the header goes
   * on past `bytes`, -2 when these are no gzip header (see {@linkcode error}).
   */
  read(bytes: Uint8Array, from: number): number {
    let i = from;
    while (this.#field !== "done") {
      if (i === bytes.length) return -1;
      const field = this.#field;
      if (field === "extra") {
        const take = Math.min(this.#extraLeft, bytes.length - i);
        this.#crc = crc32(bytes.subarray(i, i + take), this.#crc);
        this.#extraLeft -= take;
        this.size += take;
        i += take;
        if (this.#extraLeft === 0) this.#next();
      } else if (field === "name" || field === "comment") {
        const zero = bytes.indexOf(0, i);
        const end = zero === -1 ? bytes.length : zero + 1;
        this.#crc = crc32(bytes.subarray(i, end), this.#crc);
        this.size += end - i;
        i = end;
        if (zero !== -1) this.#next();
      } else {
        const want = field === "fixed" ? FIXED_HEADER_BYTES : 2;
        const take = Math.min(want - this.#fieldBytes, bytes.length - i);
        this.#bytes.set(bytes.subarray(i, i + take), this.#fieldBytes);
        this.#fieldBytes += take;
        this.size += take;
        i += take;
        if (field === "fixed" && !this.#magicHolds()) return this.#fail("no gzip header", true);
        if (this.#fieldBytes < want) return -1;
        const error = this.#endField(field);
        if (error !== null) return this.#fail(error, false);
      }
    }
    return i;
  }

  #magicHolds(): boolean {
    const bytes = this.#bytes;
    return bytes[0] === MAGIC_1 && (this.#fieldBytes < 2 || bytes[1] === MAGIC_2);
  }

  /** Checks a fixed-size field once whole; returns what is wrong with it, or null. */
  #endField(field: HeaderField): string | null {
    const bytes = this.#bytes;
    const value = bytes[0] | bytes[1] << 8;
    if (field === "fixed") {
      if (bytes[2] !== DEFLATE_METHOD) return "unknown compression method";
      this.#flags = bytes[3];
      if (this.#flags & RESERVED_FLAGS) return "unknown header flags set";
      this.#crc = crc32(bytes, this.#crc);
    } else if (field === "extraLength") {
      this.#extraLeft = value;
      this.#crc = crc32(bytes.subarray(0, 2), this.#crc);
    } else if (value !== (this.#crc & 0xffff)) {
      return "header crc mismatch";
    }
    this.#next();
    return null;
  }

  /** Moves to the next field the flags call for. */
  #next(): void {
    this.#fieldBytes = 0;
    const flags = this.#flags;
    for (let i = FIELD_ORDER.indexOf(this.#field) + 1;; i++) {
      const field = FIELD_ORDER[i];
      const present = field === "extraLength"
        ? flags & FEXTRA
        : field === "extra"
        ? this.#extraLeft > 0
        : field === "name"
        ? flags & FNAME
        : field === "comment"
        ? flags & FCOMMENT
        : field === "headerCrc"
        ? flags & FHCRC
        : true;
      if (present) {
        this.#field = field;
        return;
      }
    }
  }

  #fail(error: string, notGzip: boolean): number {
    this.error = error;
    this.notGzip = notGzip;
    return -2;
  }
}

function isZeros(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

function bytes(count: number): string {
  return count === 1 ? "1 byte" : `${count} bytes`;
}
