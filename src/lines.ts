/**
 * Raw bytes to numbered record texts: the lines of a JSONL file, or the elements of a file
 * holding one JSON array. Records too long or not UTF-8 become error {@linkcode Line}s, so one
 * bad record never stops a run, and an over-long one is counted, never held in memory.
 *
 * @module
 */
import { isTurnList } from "./records.ts";
import type { InputFault, Line } from "./types.ts";

/** Limits shared by {@linkcode lineStream}, {@linkcode jsonArrayStream} and {@linkcode recordTextStream}. */
export interface LineOptions {
  /**
   * The longest record accepted, in bytes without its line ending. A longer one becomes one
   * error Line and is only counted, never held whole.
   *
   * @default {16777216} (16 MiB)
   */
  maxLineBytes?: number;
  /**
   * How many leading bytes of a rejected record are kept for its `preview`.
   *
   * @default {1000}
   */
  previewBytes?: number;
}

/** Options of {@linkcode recordTextStream}. */
export interface RecordTextOptions extends LineOptions {
  /**
   * `"jsonl"`: one record per line. `"auto"`: the {@linkcode Layout} that
   * {@linkcode sniffLayout} finds.
   *
   * @default {"jsonl"}
   */
  format?: "jsonl" | "auto";
  /**
   * Asked once the bytes end: why they could not be read to their end, if so (a decompressor's
   * fault, see `decompress.ts`). That fault is then the last Line, `final`: when it is `cut`, on
   * the record it cut, if any, whose preview is what was read of it (so a record cut in two is
   * not a second reject); else on the line after the last one.
   *
   * @default {the bytes are taken as whole}
   */
  fault?: () => InputFault | null;
}

/**
 * How `"auto"` content is split into records: `"lines"`, one per line (JSONL); `"array"`, the
 * elements of a JSON array; `"values"`, pretty-printed JSON values one after another.
 */
export type Layout = "lines" | "array" | "values";

/**
 * Splits UTF-8 bytes on `\n` into numbered lines (from 1), dropping one trailing `\r` per line
 * and a BOM at the very start. Blank lines are emitted too; a trailing newline at the end does
 * not make an extra empty line. A line over `maxLineBytes` or not valid UTF-8 becomes an
 * error Line with a preview of its start.
 *
 * @param options Size limits.
 * @returns A transform from raw bytes to {@linkcode Line}s.
 * @throws {RangeError} When a limit is not a positive integer (or negative, for `previewBytes`).
 *
 * @example Numbered lines from bytes split anywhere
 * ```ts
 * import assert from "node:assert/strict";
 * import { lineStream } from "./lines.ts";
 *
 * const bytes = new TextEncoder().encode('\uFEFF{"a":1}\r\n\n{"b":"é"}');
 * const chunks = [bytes.subarray(0, 5), bytes.subarray(5, 20), bytes.subarray(20)];
 * const lines = await Array.fromAsync(ReadableStream.from(chunks).pipeThrough(lineStream()));
 * assert.deepEqual(lines, [
 *   { line: 1, text: '{"a":1}' },
 *   { line: 2, text: "" },
 *   { line: 3, text: '{"b":"é"}' },
 * ]);
 * ```
 *
 * @example An over-long line is one error Line
 * ```ts
 * import assert from "node:assert/strict";
 * import { lineStream } from "./lines.ts";
 *
 * const bytes = new TextEncoder().encode("123456789\nok\n");
 * const stream = ReadableStream.from([bytes]).pipeThrough(
 *   lineStream({ maxLineBytes: 5, previewBytes: 3 }),
 * );
 * assert.deepEqual(await Array.fromAsync(stream), [
 *   { line: 1, error: "line is 9 bytes, over the limit of 5", preview: "123" },
 *   { line: 2, text: "ok" },
 * ]);
 * ```
 */
export function lineStream(options: LineOptions = {}): TransformStream<Uint8Array, Line> {
  return byteTransform(new BomStripper(new LineSplitter(resolveLimits(options))));
}

/**
 * Splits a file holding one JSON array of records (pretty-printed over many lines, as many
 * ShareGPT datasets ship) into its top-level elements: each one's exact text, numbered with the
 * line where it starts. Only strings, escapes and bracket depth are tracked, so the elements are
 * checked as JSON later, one by one. Stray commas between elements are skipped.
 *
 * Error Lines: content not starting with `[` ("not a JSON array"), an element over
 * `maxLineBytes` (counted, never held), invalid UTF-8 in an element, an array not closed at the
 * end of input (at the start line of the cut element, saying which lines could not be read), and
 * a line of other content after the closing `]`: that line is skipped, and another array, or
 * objects one after another, after it are read too. An element broken by a raw newline in a
 * string, or left open by a missing `}` or `]`, is one error Line saying which lines it spans, and
 * the elements after it are read: how the next one is found is told at `ArraySplitter`.
 *
 * @param options Size limits; `maxLineBytes` applies to each element.
 * @returns A transform from raw bytes to {@linkcode Line}s, one per element.
 * @throws {RangeError} When a limit is not a positive integer (or negative, for `previewBytes`).
 *
 * @example Elements of a pretty-printed array
 * ```ts
 * import assert from "node:assert/strict";
 * import { jsonArrayStream } from "./lines.ts";
 *
 * const text = '[\n  {\n    "id": "a]"\n  },\n  {"id": "b"}\n]\n';
 * const stream = ReadableStream.from([new TextEncoder().encode(text)])
 *   .pipeThrough(jsonArrayStream());
 * assert.deepEqual(await Array.fromAsync(stream), [
 *   { line: 2, text: '{\n    "id": "a]"\n  }' },
 *   { line: 5, text: '{"id": "b"}' },
 * ]);
 * ```
 */
export function jsonArrayStream(options: LineOptions = {}): TransformStream<Uint8Array, Line> {
  return byteTransform(new BomStripper(new ArraySplitter(resolveLimits(options))));
}

/**
 * Record texts from raw bytes in either input format: `"jsonl"` is {@linkcode lineStream};
 * `"auto"` reads the start of the content as {@linkcode sniffLayout} does, then splits all of it
 * that way: a JSON array ({@linkcode jsonArrayStream}), pretty-printed JSON values one after
 * another, or JSONL (a JSONL of bare turn lists included).
 *
 * @param options The format and size limits.
 * @returns A transform from raw bytes to {@linkcode Line}s.
 * @throws {TypeError} When `format` is neither `"jsonl"` nor `"auto"`.
 * @throws {RangeError} When a limit is not a positive integer (or negative, for `previewBytes`).
 *
 * @example Sniffing a JSON array
 * ```ts
 * import assert from "node:assert/strict";
 * import { recordTextStream } from "./lines.ts";
 *
 * const read = (text: string) =>
 *   Array.fromAsync(
 *     ReadableStream.from([new TextEncoder().encode(text)])
 *       .pipeThrough(recordTextStream({ format: "auto" })),
 *   );
 * assert.deepEqual(await read('\n[{"a":1},\n {"a":2}]'), [
 *   { line: 2, text: '{"a":1}' },
 *   { line: 3, text: '{"a":2}' },
 * ]);
 * assert.deepEqual(await read('{"a":1}\n'), [{ line: 1, text: '{"a":1}' }]);
 * ```
 */
export function recordTextStream(
  options: RecordTextOptions = {},
): TransformStream<Uint8Array, Line> {
  const { format = "jsonl", fault, ...limits } = options;
  if (format !== "jsonl" && format !== "auto") {
    throw new TypeError(`Cannot read format "${format}": expected "jsonl" or "auto"`);
  }
  const resolved = resolveLimits(limits);
  const splitter = format === "jsonl" ? new LineSplitter(resolved) : new FormatSniffer(resolved);
  return byteTransform(new BomStripper(splitter), fault);
}

/**
 * How `"auto"` reads content, from its start (after an optional BOM): a `[` opens a JSON array,
 * unless its line holds all of it and its elements are all turns (see `isTurnList` in
 * `records.ts`), then the content is JSONL of bare conversations, as `json.dumps(messages)` per
 * line writes it; a `{` alone on its line starts pretty-printed values one after another; anything
 * else is JSONL. A first element that is no turn decides at once (a one-line array of records,
 * as `json.dump` writes one without `indent`, is not held to its end); otherwise the `[` line
 * decides, within `maxLineBytes` (a longer line is an array: as JSONL it would be rejected whole),
 * so at most about that much is read. The stream is then cancelled.
 *
 * @param bytes The content, decompressed.
 * @param options `maxLineBytes` bounds what is read.
 * @returns The layout `recordTextStream({ format: "auto" })` will split the content by.
 * @throws {RangeError} When a limit is not a positive integer (or negative, for `previewBytes`).
 *
 * @example JSONL of bare turn lists, and an array of records on one line
 * ```ts
 * import assert from "node:assert/strict";
 * import { sniffLayout } from "./lines.ts";
 *
 * const sniff = (text: string) => sniffLayout(ReadableStream.from([new TextEncoder().encode(text)]));
 * const turns = '[{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello"}]';
 * assert.equal(await sniff(`${turns}\n${turns}\n`), "lines");
 * assert.equal(await sniff(`[{"conversations":${turns}}]\n`), "array");
 * assert.equal(await sniff(`[${turns},${turns}]`), "array");
 * ```
 */
export async function sniffLayout(
  bytes: ReadableStream<Uint8Array>,
  options: LineOptions = {},
): Promise<Layout> {
  const sniffer = new LayoutSniffer(resolveLimits(options));
  const bomless = new BomStripper(sniffer);
  const reader = bytes.getReader();
  try {
    while (sniffer.layout === null) {
      const { done, value } = await reader.read();
      if (done) bomless.finish(NO_OUTPUT);
      else bomless.push(value, NO_OUTPUT);
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return sniffer.layout;
}

const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;
const DEFAULT_PREVIEW_BYTES = 1000;

const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const QUOTE = 0x22;
const COMMA = 0x2c;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const BOM = [0xef, 0xbb, 0xbf];

interface Limits {
  readonly maxBytes: number;
  readonly previewBytes: number;
}

function resolveLimits(options: LineOptions): Limits {
  const { maxLineBytes = DEFAULT_MAX_LINE_BYTES, previewBytes = DEFAULT_PREVIEW_BYTES } = options;
  if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1) {
    throw new RangeError(`Cannot use maxLineBytes ${maxLineBytes}: expected a positive integer`);
  }
  if (!Number.isSafeInteger(previewBytes) || previewBytes < 0) {
    throw new RangeError(`Cannot use previewBytes ${previewBytes}: expected an integer >= 0`);
  }
  return { maxBytes: maxLineBytes, previewBytes };
}

type LineOut = Pick<TransformStreamDefaultController<Line>, "enqueue">;

/** For sinks that only decide and never write, as {@linkcode sniffLayout}'s. */
const NO_OUTPUT: LineOut = { enqueue() {} };

/** A stage fed bytes chunk by chunk; the building block of every stream here. */
interface ByteSink {
  push(chunk: Uint8Array, out: LineOut): void;
  /** The bytes ended; with a fault, they broke off there (see `RecordTextOptions.fault`). */
  finish(out: LineOut, fault?: InputFault | null): void;
}

function byteTransform(
  sink: ByteSink,
  fault?: () => InputFault | null,
): TransformStream<Uint8Array, Line> {
  return new TransformStream({
    transform(chunk, controller) {
      sink.push(chunk, controller);
    },
    flush(controller) {
      sink.finish(controller, fault?.());
    },
  });
}

/** The Line a fault ends the input with. */
function faultLine(line: number, fault: InputFault, preview = ""): Line {
  return { line, error: fault.reason, preview, final: true };
}

/** Strict decoding for record text, lossy decoding for previews of rejected records. */
class Utf8 {
  // ignoreBOM keeps a U+FEFF inside the data: only the one at the start of input is dropped.
  readonly #strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  readonly #lossy = new TextDecoder("utf-8", { ignoreBOM: true });
  readonly #previewBytes: number;

  constructor(previewBytes: number) {
    this.#previewBytes = previewBytes;
  }

  /** The text, or null when the bytes are not valid UTF-8. */
  decode(bytes: Uint8Array): string | null {
    try {
      return this.#strict.decode(bytes);
    } catch (error) {
      if (error instanceof TypeError) return null;
      throw error;
    }
  }

  /** The start of `bytes` as text, without a character cut in half at the end. */
  preview(bytes: Uint8Array): string {
    const text = this.#lossy.decode(bytes.subarray(0, this.#previewBytes), { stream: true });
    this.#lossy.decode(); // drops the cut character and resets the decoder
    return text;
  }

  /** A Line for `bytes`: its text, or an error when it is not valid UTF-8. */
  line(line: number, bytes: Uint8Array): Line {
    const text = this.decode(bytes);
    return text === null
      ? { line, error: "invalid UTF-8", preview: this.preview(bytes) }
      : { line, text };
  }
}

/**
 * The bytes of one record that spans chunks. Past `holdLimit` bytes it keeps only the first
 * `previewBytes` and counts the rest, so a huge record costs no memory.
 */
class SpanBuffer {
  #parts: Uint8Array[] = [];
  #preview: Uint8Array | null = null;
  #size = 0;
  #lastByte = -1;
  readonly #holdLimit: number;
  readonly #previewBytes: number;

  constructor(holdLimit: number, previewBytes: number) {
    this.#holdLimit = holdLimit;
    this.#previewBytes = previewBytes;
  }

  /** Bytes seen since the last reset, held or not. */
  get size(): number {
    return this.#size;
  }

  /** The last byte seen, or -1. */
  get lastByte(): number {
    return this.#lastByte;
  }

  /** True while every byte seen is still held. */
  get holding(): boolean {
    return this.#preview === null;
  }

  append(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#size += bytes.length;
    this.#lastByte = bytes[bytes.length - 1];
    if (this.#preview !== null) return;
    if (this.#size <= this.#holdLimit) {
      // A copy: the producer may reuse its chunk buffers.
      this.#parts.push(bytes.slice());
      return;
    }
    this.#parts.push(bytes);
    this.stopHolding();
  }

  /** Keeps only the preview from now on. */
  stopHolding(): void {
    if (this.#preview !== null) return;
    this.#preview = concat(this.#parts, this.#previewBytes);
    this.#parts = [];
  }

  /** Every byte seen; only while {@linkcode holding}. */
  bytes(): Uint8Array {
    return this.#parts.length === 1 ? this.#parts[0] : concat(this.#parts, this.#size);
  }

  /** The first bytes seen, for a preview. */
  head(): Uint8Array {
    return this.#preview ?? concat(this.#parts, this.#previewBytes);
  }

  reset(): void {
    this.#parts = [];
    this.#preview = null;
    this.#size = 0;
    this.#lastByte = -1;
  }
}

/**
 * A new array with the first `limit` bytes of `parts`.
 *
 * @param parts The byte runs, in order.
 * @param limit The most bytes kept.
 * @returns Their bytes, joined.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { concat } from "./lines.ts";
 *
 * assert.deepEqual(concat([new Uint8Array([1, 2]), new Uint8Array([3])], 2), new Uint8Array([1, 2]));
 * ```
 */
export function concat(parts: readonly Uint8Array[], limit: number): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const result = new Uint8Array(Math.min(length, limit));
  let offset = 0;
  for (const part of parts) {
    if (offset === result.length) break;
    const piece = part.subarray(0, result.length - offset);
    result.set(piece, offset);
    offset += piece.length;
  }
  return result;
}

/** Drops a UTF-8 BOM at the very start of input, even when chunks split it. */
class BomStripper implements ByteSink {
  /** Leading bytes that may still be a BOM; null once decided. */
  #head: Uint8Array | null = new Uint8Array(0);
  readonly #next: ByteSink;

  constructor(next: ByteSink) {
    this.#next = next;
  }

  push(chunk: Uint8Array, out: LineOut): void {
    if (this.#head === null) return this.#next.push(chunk, out);
    const head = this.#head.length === 0 ? chunk : concat([this.#head, chunk], Infinity);
    if (head.length < BOM.length && isBomStart(head)) {
      this.#head = head.slice();
      return;
    }
    this.#head = null;
    this.#next.push(isBomStart(head) ? head.subarray(BOM.length) : head, out);
  }

  finish(out: LineOut, fault?: InputFault | null): void {
    if (this.#head !== null && this.#head.length > 0) this.#next.push(this.#head, out);
    this.#head = null;
    this.#next.finish(out, fault);
  }
}

/** True when `bytes` starts with a BOM, or is shorter than one and starts like one. */
function isBomStart(bytes: Uint8Array): boolean {
  const length = Math.min(bytes.length, BOM.length);
  for (let i = 0; i < length; i++) {
    if (bytes[i] !== BOM[i]) return false;
  }
  return true;
}

function isJsonWhitespace(byte: number): boolean {
  return byte === SPACE || byte === LF || byte === CR || byte === TAB;
}

/** The length of the whitespace run that ends `bytes`. */
function trailingWhitespace(bytes: Uint8Array): number {
  let end = bytes.length;
  while (end > 0 && isJsonWhitespace(bytes[end - 1])) end--;
  return bytes.length - end;
}

class LineSplitter implements ByteSink {
  #line = 1;
  readonly #limits: Limits;
  readonly #utf8: Utf8;
  // One byte over the limit still fits: it may be the `\r` of a `\r\n`.
  readonly #span: SpanBuffer;

  constructor(limits: Limits) {
    this.#limits = limits;
    this.#utf8 = new Utf8(limits.previewBytes);
    this.#span = new SpanBuffer(limits.maxBytes + 1, limits.previewBytes);
  }

  push(chunk: Uint8Array, out: LineOut): void {
    // indexOf and subarray keep the common case (whole lines inside one chunk) copy-free and
    // out of JS byte loops; only a line spanning chunks is gathered in the span buffer.
    let start = 0;
    let newline = chunk.indexOf(LF);
    while (newline !== -1) {
      if (this.#span.size === 0) {
        this.#emit(chunk.subarray(start, newline), out);
      } else {
        this.#span.append(chunk.subarray(start, newline));
        this.#emitSpan(out);
      }
      start = newline + 1;
      newline = chunk.indexOf(LF, start);
    }
    this.#span.append(chunk.subarray(start));
  }

  finish(out: LineOut, fault?: InputFault | null): void {
    const span = this.#span;
    if (fault?.cut && span.size > 0) {
      out.enqueue(faultLine(this.#line, fault, this.#utf8.preview(span.head())));
      span.reset();
      return;
    }
    if (span.size > 0) this.#emitSpan(out);
    if (fault) out.enqueue(faultLine(this.#line, fault));
  }

  #emit(bytes: Uint8Array, out: LineOut): void {
    const content = bytes[bytes.length - 1] === CR ? bytes.subarray(0, -1) : bytes;
    if (content.length > this.#limits.maxBytes) {
      this.#emitTooLong(content.length, this.#utf8.preview(content), out);
    } else {
      out.enqueue(this.#utf8.line(this.#line++, content));
    }
  }

  #emitSpan(out: LineOut): void {
    const span = this.#span;
    if (span.holding) {
      this.#emit(span.bytes(), out);
    } else {
      const size = span.lastByte === CR ? span.size - 1 : span.size;
      this.#emitTooLong(size, this.#utf8.preview(span.head()), out);
    }
    span.reset();
  }

  #emitTooLong(size: number, preview: string, out: LineOut): void {
    const error = `line is ${size} bytes, over the limit of ${this.#limits.maxBytes}`;
    out.enqueue({ line: this.#line++, error, preview });
  }
}

type ArrayState = "before" | "between" | "element" | "broken" | "after" | "done";

/**
 * Open brackets whose kinds are kept per element to catch a `}` closing a `[` (or the reverse);
 * deeper nesting is only counted. Records nest a few levels.
 */
const TRACKED_DEPTH = 1024;

/**
 * Splits a JSON array into its elements or, when not `enclosed`, a run of pretty-printed JSON
 * objects (or arrays) written one after another into each value.
 *
 * A broken element costs that element, not the rest of the input. Resynchronising rests on how
 * `json.dump(indent=…)`, `jq` and `JSON.stringify(…, null, n)` lay an array out: each element
 * starts on a line of its own, at one indentation, and inside it only its closing line comes back
 * to that indentation. So:
 * - A raw newline inside a string is never valid JSON: the element breaks there, and its lines are
 *   passed over up to the line at its indentation that closes it (a `}` for an object), or that
 *   starts the next element, or that closes the array. An element that did not start its line
 *   resynchronises on the next line starting with its first byte.
 * - A line at the element's indentation that starts another element while it is still open may
 *   mean a missing `}` or `]`, but valid JSON laid out otherwise has such lines too. So it is only
 *   a checkpoint: the element is read on, and split there only once it cannot be valid (a bracket
 *   closes the other kind, a raw newline in a string, the input ends inside it) or cannot be a
 *   record anyway (over twice `maxLineBytes`, up to which it is held for this; or over
 *   `maxLineBytes` when the line comes). Then the element is rejected up to that line, and what
 *   follows is read again from there. Valid input is never split.
 *
 * Either way the reject says which lines could not be read.
 */
class ArraySplitter implements ByteSink {
  #state: ArrayState;
  #line = 1;
  /** Spaces and tabs that start the current line so far, while nothing else has come on it. */
  #indent = 0;
  #lineBlank = true;
  #arrayLine = 1;
  #elementLine = 1;
  /** The element's indentation, or -1 when it did not start its line. */
  #elementIndent = -1;
  /** The element's first byte. */
  #opener = 0;
  #depth = 0;
  /** The kind of each open bracket, up to {@linkcode TRACKED_DEPTH}. */
  readonly #openers = new Uint8Array(TRACKED_DEPTH);
  /** A bracket closed the other kind: the element is not valid JSON. */
  #mismatched = false;
  /** The first line that started another element while this one was open (see the class doc). */
  #checkpoint: { line: number; offset: number } | null = null;
  #inString = false;
  #escaped = false;
  /** Whitespace at the end of the spanning element so far: not part of its text. */
  #trailing = 0;
  /** The last byte pushed was a newline (or none came): the next line is `#line`. */
  #endsLine = true;
  /** The element a raw newline broke, whose lines are being passed over. */
  #broken: { line: number; at: number; preview: string } | null = null;
  /** Bytes to read again before going on, after a split at a checkpoint. */
  #replay: Uint8Array | null = null;
  readonly #limits: Limits;
  readonly #utf8: Utf8;
  // Holds up to twice the limit so that trailing whitespace cannot push a fitting element over,
  // and an element with a checkpoint can be read again from it; #scanElement stops holding an
  // element without one as soon as it is over the limit.
  readonly #span: SpanBuffer;

  /** Inside `[...]`; after its `]`, objects that follow are read one after another. */
  #enclosed: boolean;
  /** A rejected line being passed over: its error is sent once its end (or the input's) comes. */
  #skipped: { line: number; error: string; head: Uint8Array[]; headBytes: number } | null = null;

  constructor(limits: Limits, enclosed = true) {
    this.#limits = limits;
    this.#enclosed = enclosed;
    this.#state = enclosed ? "before" : "between";
    this.#utf8 = new Utf8(limits.previewBytes);
    this.#span = new SpanBuffer(2 * limits.maxBytes, limits.previewBytes);
  }

  push(chunk: Uint8Array, out: LineOut): void {
    if (chunk.length > 0) this.#endsLine = chunk[chunk.length - 1] === LF;
    this.#scan(chunk, out);
  }

  finish(out: LineOut, fault?: InputFault | null): void {
    if (fault?.cut) return this.#breakOff(out, fault);
    // The input ends inside an element: it is not valid, so it splits at its checkpoint.
    while (this.#state === "element" && this.#checkpoint !== null) {
      this.#split(this.#span.bytes(), out);
      this.#scan(new Uint8Array(0), out);
    }
    if (this.#skipped !== null) this.#endSkip(out);
    const last = this.#endsLine ? this.#line - 1 : this.#line;
    if (this.#state === "element") {
      const preview = this.#utf8.preview(this.#span.head());
      const what = this.#enclosed ? "JSON array" : "JSON value";
      const error = `${what} is not closed: ${
        linesFrom(this.#elementLine, last)
      } could not be read`;
      out.enqueue({ line: this.#elementLine, error, preview });
      this.#span.reset();
    } else if (this.#state === "broken") {
      this.#endBroken(last, out);
    } else if (this.#state === "between" && this.#enclosed) {
      out.enqueue({ line: this.#arrayLine, error: "JSON array is not closed", preview: "" });
    }
    this.#state = "done";
    if (fault) out.enqueue(faultLine(last + 1, fault));
  }

  /** Reads `chunk`, and whatever a split gives to read again first. */
  #scan(chunk: Uint8Array, out: LineOut): void {
    const work = [{ bytes: chunk, at: 0 }];
    if (this.#replay !== null) work.push({ bytes: this.#replay, at: 0 });
    this.#replay = null;
    while (work.length > 0 && this.#state !== "done") {
      const item = work[work.length - 1];
      if (item.at >= item.bytes.length) {
        work.pop();
        continue;
      }
      item.at = this.#state === "element"
        ? this.#scanElement(item.bytes, item.at, out)
        : this.#state === "broken"
        ? this.#scanBroken(item.bytes, item.at, out)
        : this.#scanOutside(item.bytes, item.at, out);
      if (this.#replay !== null) {
        work.push({ bytes: this.#replay, at: 0 });
        this.#replay = null;
      }
    }
  }

  /**
   * The bytes broke off: the element or stray line they cut, if any, is the fault's Line, and an
   * array left open by the break is not reported as such.
   */
  #breakOff(out: LineOut, fault: InputFault): void {
    const skipped = this.#skipped;
    if (skipped !== null) {
      this.#skipped = null;
      out.enqueue(
        faultLine(skipped.line, fault, this.#utf8.preview(concat(skipped.head, Infinity))),
      );
    } else if (this.#state === "element") {
      out.enqueue(faultLine(this.#elementLine, fault, this.#utf8.preview(this.#span.head())));
      this.#span.reset();
    } else if (this.#state === "broken") {
      out.enqueue(faultLine(this.#broken!.line, fault, this.#broken!.preview));
    } else {
      out.enqueue(faultLine(this.#line, fault));
    }
    this.#state = "done";
  }

  /** Whitespace and punctuation outside elements; returns where to go on. */
  #scanOutside(chunk: Uint8Array, from: number, out: LineOut): number {
    if (this.#skipped !== null) {
      from = this.#skipOn(chunk, from, out);
      if (from === chunk.length) return from;
    }
    for (let i = from; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte === LF) {
        this.#line++;
        this.#indent = 0;
        this.#lineBlank = true;
        continue;
      }
      if (byte === SPACE || byte === TAB) {
        if (this.#lineBlank) this.#indent++;
        continue;
      }
      if (byte === CR) continue;
      const indent = this.#lineBlank ? this.#indent : -1;
      this.#lineBlank = false;
      switch (this.#state) {
        case "before":
          if (byte === OPEN_BRACKET) {
            this.#state = "between";
            this.#arrayLine = this.#line;
            continue;
          }
          this.#reject("not a JSON array", chunk.subarray(i), out);
          return chunk.length;
        case "between":
          if (byte === COMMA) continue;
          if (byte === CLOSE_BRACKET && this.#enclosed) {
            this.#state = "after";
            continue;
          }
          // Outside an array only objects and arrays can end where their brackets close.
          if (!this.#enclosed && byte !== OPEN_BRACE && byte !== OPEN_BRACKET) {
            return this.#skipLine("unexpected content between JSON values", chunk, i, out);
          }
          return this.#startElement(chunk, i, indent);
        default:
          // After the array, another array's elements, or objects one after another (JSONL
          // lines are such objects), are read too: a file of several dumps loses nothing.
          if (byte === OPEN_BRACKET) {
            this.#state = "between";
            this.#arrayLine = this.#line;
            continue;
          }
          if (byte === OPEN_BRACE) {
            this.#enclosed = false;
            return this.#startElement(chunk, i, indent);
          }
          return this.#skipLine("unexpected content after the JSON array", chunk, i, out);
      }
    }
    return chunk.length;
  }

  #startElement(chunk: Uint8Array, at: number, indent: number): number {
    this.#state = "element";
    this.#elementLine = this.#line;
    this.#elementIndent = indent;
    this.#opener = chunk[at];
    this.#depth = 0;
    this.#mismatched = false;
    this.#checkpoint = null;
    this.#inString = false;
    this.#escaped = false;
    return at;
  }

  /**
   * Rejects the rest of the line from `at` and goes on after it, in the same state: one stray
   * line costs that line, not the rest of the input.
   */
  #skipLine(error: string, chunk: Uint8Array, at: number, out: LineOut): number {
    this.#skipped = { line: this.#line, error, head: [], headBytes: 0 };
    return this.#skipOn(chunk, at, out);
  }

  /** Passes over the skipped line up to its end, keeping its start for the preview. */
  #skipOn(chunk: Uint8Array, from: number, out: LineOut): number {
    const skipped = this.#skipped!;
    const newline = chunk.indexOf(LF, from);
    const end = newline === -1 ? chunk.length : newline;
    // Past the preview's size, bytes are only passed over (a character cut there is dropped).
    const room = this.#limits.previewBytes + 4 - skipped.headBytes;
    if (room > 0 && end > from) {
      skipped.head.push(chunk.slice(from, Math.min(end, from + room)));
      skipped.headBytes += Math.min(end - from, room);
    }
    if (newline === -1) return chunk.length;
    this.#endSkip(out);
    return newline;
  }

  #endSkip(out: LineOut): void {
    const { line, error, head, headBytes } = this.#skipped!;
    this.#skipped = null;
    out.enqueue({ line, error, preview: this.#utf8.preview(concat(head, headBytes)) });
  }

  #reject(error: string, rest: Uint8Array, out: LineOut): void {
    out.enqueue({ line: this.#line, error, preview: this.#utf8.preview(rest) });
    this.#state = "done";
  }

  /** Scans one element up to its top-level `,` or `]`; returns where to go on. */
  #scanElement(chunk: Uint8Array, from: number, out: LineOut): number {
    // Hot loop: state lives in locals and is written back once per chunk. String contents, most
    // of a chat record, are skipped with indexOf; the structure between them goes byte by byte.
    const length = chunk.length;
    const enclosed = this.#enclosed;
    const opener = this.#opener;
    const elementIndent = this.#elementIndent;
    const openers = this.#openers;
    let depth = this.#depth;
    let inString = this.#inString;
    let escaped = this.#escaped;
    let line = this.#line;
    let indent = this.#indent;
    let lineBlank = this.#lineBlank;
    let nextNewline = -2;
    let end = -1;
    // Where the element stopped before its end: a raw newline in a string, a bracket of the other
    // kind with a checkpoint to split at, or a line that starts another element.
    let stop: "newline" | "mismatch" | "next" | null = null;
    let at = -1;
    for (let i = from; i < length; i++) {
      const byte = chunk[i];
      if (inString) {
        if (escaped) {
          escaped = false;
          if (byte === LF) {
            stop = "newline";
            at = i;
            break;
          }
          continue;
        }
        const quote = chunk.indexOf(QUOTE, i);
        const close = quote === -1 ? length : quote;
        if (nextNewline !== -1 && nextNewline < i) nextNewline = chunk.indexOf(LF, i);
        if (nextNewline !== -1 && nextNewline < close) {
          stop = "newline";
          at = nextNewline;
          break;
        }
        let backslashes = 0;
        while (close - backslashes > i && chunk[close - backslashes - 1] === BACKSLASH) {
          backslashes++;
        }
        if (quote === -1) {
          escaped = backslashes % 2 === 1;
          break;
        }
        inString = backslashes % 2 === 1;
        i = quote;
        continue;
      }
      if (lineBlank) {
        if (byte === SPACE || byte === TAB) {
          indent++;
          continue;
        }
        lineBlank = false;
        if (byte === opener && indent === elementIndent && depth > 0) {
          const size = this.#span.size + (i - from);
          // Past the limit, or not valid already: no record is lost by splitting here.
          if (this.#mismatched || size > this.#limits.maxBytes) {
            stop = "next";
            at = i;
            break;
          }
          this.#checkpoint ??= { line, offset: size };
        }
      }
      if (byte === QUOTE) {
        inString = true;
      } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
        if (depth < TRACKED_DEPTH) openers[depth] = byte;
        depth++;
      } else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
        if (depth > 0) {
          if (
            depth <= TRACKED_DEPTH && (openers[depth - 1] === OPEN_BRACE) !== (byte === CLOSE_BRACE)
          ) {
            if (this.#checkpoint !== null) {
              stop = "mismatch";
              at = i;
              break;
            }
            this.#mismatched = true;
          }
          depth--;
          // A value outside an array ends with its own closing bracket, kept in its text.
          if (depth === 0 && !enclosed) {
            end = i + 1;
            break;
          }
        } else if (byte === CLOSE_BRACKET) {
          end = i;
          break;
        }
      } else if (byte === COMMA) {
        if (depth === 0 && enclosed) {
          end = i;
          break;
        }
      } else if (byte === LF) {
        line++;
        indent = 0;
        lineBlank = true;
      }
    }
    this.#depth = depth;
    this.#inString = inString;
    this.#escaped = escaped;
    this.#line = line;
    this.#indent = indent;
    this.#lineBlank = lineBlank;

    const span = this.#span;
    if (stop !== null) {
      const segment = chunk.subarray(from, at);
      if (stop === "next") {
        span.append(segment);
        this.#rejectUnclosed(line, this.#utf8.preview(span.head()), out);
        this.#lineBlank = true;
        return at;
      }
      if (this.#checkpoint !== null) {
        this.#split(concat([span.bytes(), segment], Infinity), out);
        return at;
      }
      // A raw newline, the element's first break: its lines are passed over.
      span.append(segment);
      this.#broken = {
        line: this.#elementLine,
        at: line,
        preview: this.#utf8.preview(span.head()),
      };
      span.reset();
      this.#trailing = 0;
      this.#state = "broken";
      return at;
    }

    const segment = chunk.subarray(from, end === -1 ? chunk.length : end);
    if (this.#checkpoint !== null && span.size + segment.length > 2 * this.#limits.maxBytes) {
      // Too long to be a record and held no further: split at the checkpoint instead.
      this.#split(concat([span.bytes(), segment], Infinity), out);
      return from + segment.length;
    }
    if (end !== -1 && span.size === 0) {
      this.#emitElement(segment.subarray(0, segment.length - trailingWhitespace(segment)), out);
    } else {
      span.append(segment);
      const trailing = trailingWhitespace(segment);
      this.#trailing = trailing === segment.length ? this.#trailing + trailing : trailing;
      if (this.#checkpoint === null && span.size - this.#trailing > this.#limits.maxBytes) {
        span.stopHolding();
      }
      if (end === -1) return chunk.length;
      const size = span.size - this.#trailing;
      if (span.holding) this.#emitElement(span.bytes().subarray(0, size), out);
      else this.#emitTooLong(size, this.#utf8.preview(span.head()), out);
      span.reset();
      this.#trailing = 0;
    }
    if (!enclosed) {
      this.#state = "between";
      return end;
    }
    this.#state = chunk[end] === CLOSE_BRACKET ? "after" : "between";
    return end + 1;
  }

  /**
   * Rejects the element up to its checkpoint, and has what follows it read again from there, as
   * the start of the next element.
   */
  #split(bytes: Uint8Array, out: LineOut): void {
    const checkpoint = this.#checkpoint!;
    this.#rejectUnclosed(
      checkpoint.line,
      this.#utf8.preview(bytes.subarray(0, checkpoint.offset)),
      out,
    );
    this.#line = checkpoint.line;
    this.#indent = this.#elementIndent;
    this.#lineBlank = true;
    this.#replay = bytes.subarray(checkpoint.offset);
  }

  /** Rejects the element, still open where line `next` starts another. */
  #rejectUnclosed(next: number, preview: string, out: LineOut): void {
    const error = `element is still open where line ${next} starts another at its indentation ` +
      `(a } or ] is missing): ${linesFrom(this.#elementLine, next - 1)} could not be read`;
    out.enqueue({ line: this.#elementLine, error, preview });
    this.#span.reset();
    this.#trailing = 0;
    this.#checkpoint = null;
    this.#state = "between";
  }

  /** Passes over the lines of a broken element up to the line that resynchronises. */
  #scanBroken(chunk: Uint8Array, from: number, out: LineOut): number {
    const length = chunk.length;
    let i = from;
    while (i < length) {
      if (this.#lineBlank) {
        while (i < length && (chunk[i] === SPACE || chunk[i] === TAB)) {
          this.#indent++;
          i++;
        }
        if (i === length) return length;
        const byte = chunk[i];
        const indent = this.#indent;
        const elementIndent = this.#elementIndent;
        const atIndent = elementIndent === -1 || indent === elementIndent;
        if (
          (atIndent && byte === this.#opener) ||
          (this.#enclosed && byte === CLOSE_BRACKET &&
            (elementIndent === -1 || indent < elementIndent))
        ) {
          // The next element, or the array's end, starts this line.
          this.#endBroken(this.#line - 1, out);
          return i;
        }
        this.#lineBlank = false;
        if (elementIndent !== -1 && indent === elementIndent && byte === closerOf(this.#opener)) {
          this.#endBroken(this.#line, out);
          return i + 1;
        }
      }
      const newline = chunk.indexOf(LF, i);
      if (newline === -1) return length;
      this.#line++;
      this.#indent = 0;
      this.#lineBlank = true;
      i = newline + 1;
    }
    return length;
  }

  #endBroken(last: number, out: LineOut): void {
    const { line, at, preview } = this.#broken!;
    this.#broken = null;
    const error = `element breaks off at line ${at}: a string runs past the end of its line; ` +
      `${linesFrom(line, last)} could not be read`;
    out.enqueue({ line, error, preview });
    this.#state = "between";
  }

  #emitElement(bytes: Uint8Array, out: LineOut): void {
    if (bytes.length > this.#limits.maxBytes) {
      this.#emitTooLong(bytes.length, this.#utf8.preview(bytes), out);
    } else {
      out.enqueue(this.#utf8.line(this.#elementLine, bytes));
    }
  }

  #emitTooLong(size: number, preview: string, out: LineOut): void {
    const error = `element is ${size} bytes, over the limit of ${this.#limits.maxBytes}`;
    out.enqueue({ line: this.#elementLine, error, preview });
  }
}

/** `line 3` or `lines 3 to 9`. */
function linesFrom(first: number, last: number): string {
  return last <= first ? `line ${first}` : `lines ${first} to ${last}`;
}

/** The bracket that closes `opener`, or -1 for a value that is no object or array. */
function closerOf(opener: number): number {
  return opener === OPEN_BRACE ? CLOSE_BRACE : opener === OPEN_BRACKET ? CLOSE_BRACKET : -1;
}

/**
 * Picks the splitter from the start of the content, by {@linkcode sniffLayout}'s rules, and
 * replays what the choice took to read into it, so line numbers stay right either way.
 */
class FormatSniffer implements ByteSink {
  #next: ByteSink | null = null;
  readonly #sniffer: LayoutSniffer;
  readonly #limits: Limits;

  constructor(limits: Limits) {
    this.#limits = limits;
    this.#sniffer = new LayoutSniffer(limits);
  }

  push(chunk: Uint8Array, out: LineOut): void {
    if (this.#next !== null) return this.#next.push(chunk, out);
    const layout = this.#sniffer.push(chunk);
    if (layout !== null) this.#choose(layout, out);
  }

  finish(out: LineOut, fault?: InputFault | null): void {
    (this.#next ?? this.#choose(this.#sniffer.finish(), out)).finish(out, fault);
  }

  #choose(layout: Layout, out: LineOut): ByteSink {
    const next = layout === "lines"
      ? new LineSplitter(this.#limits)
      : new ArraySplitter(this.#limits, layout === "array");
    this.#next = next;
    for (const chunk of this.#sniffer.take()) next.push(chunk, out);
    return next;
  }
}

type SniffState = "start" | "brace" | "bracket";

/**
 * Finds the {@linkcode Layout} of content fed to it chunk by chunk, holding every byte until
 * then; see {@linkcode sniffLayout} for the rules. What it holds stays within about twice the
 * line limit: leading whitespace up to the limit, then the first line up to the limit.
 */
class LayoutSniffer implements ByteSink {
  #layout: Layout | null = null;
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  #state: SniffState = "start";
  /** Where the line being read starts, as an offset into the content. */
  #lineStart = 0;
  /** Where the opening `[` is. */
  #bracketAt = -1;
  /** Where the first element's `{` is. */
  #elementAt = -1;
  /** Something other than whitespace came after the `[`. */
  #afterBracket = false;
  /** The first element, an object, is read to its end: nesting depth, and where in a string. */
  #depth = 0;
  #inString = false;
  #escaped = false;
  /** The first element was a turn: the rest of the line decides. */
  #firstIsTurn = false;
  readonly #limits: Limits;
  readonly #utf8: Utf8;

  constructor(limits: Limits) {
    this.#limits = limits;
    this.#utf8 = new Utf8(0);
  }

  /** The layout, once decided. */
  get layout(): Layout | null {
    return this.#layout;
  }

  /** Holds `chunk`; returns the layout once the content so far decides it, else `null`. */
  push(chunk: Uint8Array): Layout | null {
    if (this.#layout !== null) return this.#layout;
    const offset = this.#heldBytes;
    // A copy: the producer may reuse its chunk buffers.
    this.#held.push(chunk.slice());
    this.#heldBytes += chunk.length;
    let layout = this.#scan(chunk, offset);
    if (layout === null && this.#state === "bracket") {
      // One byte over the limit still fits: it may be the `\r` of a `\r\n`.
      if (this.#heldBytes - this.#lineStart > this.#limits.maxBytes + 1) layout = "array";
    } else if (layout === null && this.#heldBytes > this.#limits.maxBytes) {
      layout = "lines";
    }
    return this.#layout = layout;
  }

  /** The layout at the end of the content. */
  finish(): Layout {
    this.#layout ??= this.#state === "bracket" ? this.#bracketLine(this.#heldBytes) : "lines";
    return this.#layout;
  }

  /** Every byte held, handed over once for the chosen splitter to read first. */
  take(): Uint8Array[] {
    const held = this.#held;
    this.#held = [];
    return held;
  }

  #scan(chunk: Uint8Array, offset: number): Layout | null {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      switch (this.#state) {
        case "start":
          if (byte === LF) {
            this.#lineStart = offset + i + 1;
          } else if (byte === OPEN_BRACKET) {
            this.#state = "bracket";
            this.#bracketAt = offset + i;
          } else if (byte === OPEN_BRACE) {
            this.#state = "brace";
          } else if (!isJsonWhitespace(byte)) {
            return "lines";
          }
          break;
        case "brace":
          if (byte === LF) return "values";
          if (byte !== SPACE && byte !== TAB && byte !== CR) return "lines";
          break;
        case "bracket": {
          if (!this.#afterBracket) {
            if (byte === LF) return "array";
            if (isJsonWhitespace(byte)) break;
            // Only objects can be turns: `[[`, `[1`, `[]` are arrays at once.
            if (byte !== OPEN_BRACE) return "array";
            this.#afterBracket = true;
            this.#elementAt = offset + i;
          }
          if (!this.#firstIsTurn) {
            // A one-line array of records (what `json.dump` writes without `indent`) is known
            // by its first element, not held and parsed whole up to the line limit.
            const end = this.#firstElementEnd(chunk, i);
            if (end === -1) return null;
            if (end === -2) return "array";
            if (!this.#firstElementIsTurn(offset + end)) return "array";
            this.#firstIsTurn = true;
            i = end;
          }
          const newline = chunk.indexOf(LF, i);
          return newline === -1 ? null : this.#bracketLine(offset + newline);
        }
      }
    }
    return null;
  }

  /**
   * Reads the first element on from `chunk[from]`: the index of its closing `}` in `chunk`, -1 when
   * it goes on past the chunk, -2 when its line ends first (an array spread over lines).
   */
  #firstElementEnd(chunk: Uint8Array, from: number): number {
    for (let i = from; i < chunk.length; i++) {
      const byte = chunk[i];
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (byte === BACKSLASH) this.#escaped = true;
        else if (byte === QUOTE) this.#inString = false;
      } else if (byte === QUOTE) {
        this.#inString = true;
      } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
        this.#depth++;
      } else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
        if (--this.#depth === 0) return i;
      } else if (byte === LF) {
        return -2;
      }
    }
    return -1;
  }

  /** Whether the first element, from its `{` to `end`, parses as a turn. */
  #firstElementIsTurn(end: number): boolean {
    const text = this.#utf8.decode(concat(this.#held, end + 1).subarray(this.#elementAt));
    if (text === null) return false;
    try {
      return isTurnList([JSON.parse(text)]);
    } catch {
      return false;
    }
  }

  /**
   * The layout the `[` line, ending at `end`, decides: JSONL when it is one JSON array of turns
   * (as long as JSONL allows), else an array.
   */
  #bracketLine(end: number): Layout {
    let bytes = concat(this.#held, end).subarray(this.#bracketAt);
    if (bytes[bytes.length - 1] === CR) bytes = bytes.subarray(0, -1);
    const lineBytes = this.#bracketAt - this.#lineStart + bytes.length;
    if (lineBytes > this.#limits.maxBytes) return "array";
    const text = this.#utf8.decode(bytes);
    if (text === null) return "array";
    try {
      return isTurnList(JSON.parse(text)) ? "lines" : "array";
    } catch {
      // Not JSON on its own (an array that goes on past its first line): an array it is.
      return "array";
    }
  }
}
