/**
 * Key order as the JSON text wrote it. A JavaScript object lists its integer-like keys (`"0"`,
 * `"2024"`: array indices, up to 2^32 - 2) first, in numeric order, so
 * `JSON.stringify(JSON.parse(text))` moves them to the front. This module learns each object's
 * key order from the text, keeps it beside the object (and its copies), and writes JSON in it.
 * Only the objects whose order JavaScript changes are noted; nothing is kept for other records.
 *
 * @module
 */

/** Source key order of parsed objects whose own order differs; weak, so records are freed. */
const ORDERS = new WeakMap<object, readonly string[]>();

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const LOWER_U = 0x75;

/**
 * Whether `text` may hold an integer-like key, so {@linkcode learnKeyOrder} is worth running. A
 * cheap check on the text, a superset: every key followed by `:` whose string ends in a run of
 * digits that starts the string (`"2024"`) or follows a `\u` escape (`"\u0032"`, since a digit
 * may be written so). Strings that only look like such keys cost a needless scan, nothing more.
 * It looks only at colons (a few per record) to stay far cheaper than parsing.
 *
 * @param text JSON text.
 * @returns `false` when no object in `text` can have an integer-like key.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { mayHaveIndexKeys } from "./key_order.ts";
 *
 * assert.equal(mayHaveIndexKeys('{"id":1,"scores":{"10":0.5}}'), true);
 * assert.equal(mayHaveIndexKeys('{"\\u0031" : 1}'), true);
 * assert.equal(mayHaveIndexKeys('{"id":"2024","v2":1,"at":"10:30"}'), false);
 * ```
 */
export function mayHaveIndexKeys(text: string): boolean {
  for (let at = text.indexOf(":"); at !== -1; at = text.indexOf(":", at + 1)) {
    let end = at - 1;
    while (isSpace(text.charCodeAt(end))) end--;
    if (text.charCodeAt(end) !== QUOTE || !isDigit(text.charCodeAt(end - 1))) continue;
    let start = end - 1;
    while (isDigit(text.charCodeAt(start - 1))) start--;
    const before = text.charCodeAt(start - 1);
    if (before === QUOTE || before === LOWER_U) return true;
  }
  return false;
}

/**
 * Whether the digits `text.slice(start, end)` are a whole key, `"2024":`: a quote on each side,
 * then a colon after any white space. For a caller that already walks a text's digit runs, to
 * find integer-like keys without another look at the text ({@linkcode mayHaveIndexKeys}).
 *
 * @param text JSON text.
 * @param start Where the digits start.
 * @param end Where they end (exclusive).
 * @returns `true` when they make a key.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isDigitKey } from "./key_order.ts";
 *
 * const text = '{"year":"2024","2024" :1}';
 * assert.equal(isDigitKey(text, 9, 13), false); // a value
 * assert.equal(isDigitKey(text, 16, 20), true);
 * ```
 */
export function isDigitKey(text: string, start: number, end: number): boolean {
  return text.charCodeAt(start - 1) === QUOTE && text.charCodeAt(end) === QUOTE &&
    text.charCodeAt(skipSpace(text, end + 1)) === COLON;
}

function isDigit(char: number): boolean {
  return char >= 0x30 && char <= 0x39;
}

/** An object's keys as the text lists them (a key given twice, twice), and their values' shapes. */
interface ObjectShape {
  readonly keys: string[];
  readonly values: Shape[];
}
/** A container's shape; `null` for a string, number, boolean or null. */
type Shape = ObjectShape | Shape[] | null;

/**
 * Learns the key order `text` gives every object of `value`, its `JSON.parse`d value, and notes
 * it for {@linkcode stringifyInSourceOrder} on each object whose JavaScript order differs. Walks
 * without recursion, so any depth `JSON.parse` read is fine.
 *
 * @param text Valid JSON text.
 * @param value What `JSON.parse(text)` (with or without a reviver that keeps containers) gave.
 * @returns Whether some object's order differs, i.e. `JSON.stringify` would move keys.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { learnKeyOrder, stringifyInSourceOrder } from "./key_order.ts";
 *
 * const text = '{"id":"r1","2024":"y","scores":{"10":0.5,"2":0.1}}';
 * const value = JSON.parse(text);
 * assert.equal(JSON.stringify(value), '{"2024":"y","id":"r1","scores":{"2":0.1,"10":0.5}}');
 * assert.equal(learnKeyOrder(text, value), true);
 * assert.equal(stringifyInSourceOrder(value), text);
 * assert.equal(learnKeyOrder('{"a":{"b":1}}', { a: { b: 1 } }), false);
 * ```
 */
export function learnKeyOrder(text: string, value: unknown): boolean {
  // Parsed values and their shapes, to visit: two stacks in step.
  const items: unknown[] = [value];
  const shapes: Shape[] = [scanShape(text)];
  let differs = false;
  while (items.length > 0) {
    const item = items.pop();
    const shape = shapes.pop()!;
    if (Array.isArray(shape)) {
      if (!Array.isArray(item)) continue;
      for (let at = 0; at < shape.length; at++) {
        if (shape[at] === null) continue;
        items.push(item[at]);
        shapes.push(shape[at]);
      }
    } else if (shape !== null && typeof item === "object" && item !== null) {
      const object = item as Record<string, unknown>;
      const own = Object.keys(object);
      // Fewer own keys than the text lists: some key came twice.
      const { keys, values } = own.length === shape.keys.length ? shape : lastValues(shape);
      if (!sameKeys(keys, own)) {
        ORDERS.set(object, keys);
        differs = true;
      }
      for (let at = 0; at < keys.length; at++) {
        if (values[at] === null) continue;
        items.push(object[keys[at]]);
        shapes.push(values[at]);
      }
    }
  }
  return differs;
}

/** Each key once, where it came first, with its last value's shape, as `JSON.parse` keeps it. */
function lastValues(shape: ObjectShape): ObjectShape {
  const first = new Map<string, number>();
  const keys: string[] = [];
  const values: Shape[] = [];
  for (let at = 0; at < shape.keys.length; at++) {
    const key = shape.keys[at];
    const seen = first.get(key);
    if (seen !== undefined) values[seen] = shape.values[at];
    else {
      first.set(key, keys.length);
      keys.push(key);
      values.push(shape.values[at]);
    }
  }
  return { keys, values };
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let at = 0; at < a.length; at++) if (a[at] !== b[at]) return false;
  return true;
}

/**
 * The shape of valid JSON text: every object's keys in order, every container's children. Reads
 * strings by their closing quote and skips other values, with a stack instead of recursion.
 */
function scanShape(text: string): Shape {
  /** Open containers, innermost last, and the key each open object's next value goes under. */
  const open: (ObjectShape | Shape[])[] = [];
  const keys: string[] = [];
  let at = skipSpace(text, 0);
  while (at < text.length) {
    const char = text.charCodeAt(at);
    let done: Shape; // the value just read
    if (char === OPEN_BRACE || char === OPEN_BRACKET) {
      at = skipSpace(text, at + 1);
      const next = text.charCodeAt(at);
      if (next === CLOSE_BRACE || next === CLOSE_BRACKET) {
        done = char === OPEN_BRACE ? { keys: [], values: [] } : [];
        at++;
      } else {
        open.push(char === OPEN_BRACE ? { keys: [], values: [] } : []);
        if (char === OPEN_BRACE) at = readKey(text, at, keys, open.length - 1);
        continue;
      }
    } else if (char === QUOTE) {
      at = stringEnd(text, at) + 1;
      done = null;
    } else {
      while (at < text.length && !endsValue(text.charCodeAt(at))) at++;
      done = null;
    }
    // Put the value in its container; close every container it ends, then go to the next value.
    while (true) {
      const depth = open.length - 1;
      if (depth < 0) return done;
      const parent = open[depth];
      if (Array.isArray(parent)) parent.push(done);
      else {
        parent.keys.push(keys[depth]);
        parent.values.push(done);
      }
      at = skipSpace(text, at);
      if (text.charCodeAt(at) === COMMA) {
        at = skipSpace(text, at + 1);
        if (!Array.isArray(parent)) at = readKey(text, at, keys, depth);
        break;
      }
      done = open.pop()!; // `}` or `]`
      at++;
    }
  }
  return null;
}

/** Reads the key at `at` into `keys[depth]`; returns where its value starts. */
function readKey(text: string, at: number, keys: string[], depth: number): number {
  const end = stringEnd(text, at);
  const raw = text.slice(at + 1, end);
  keys[depth] = raw.includes("\\") ? JSON.parse(text.slice(at, end + 1)) : raw;
  let colon = end + 1;
  while (colon < text.length && text.charCodeAt(colon) !== COLON) colon++;
  return skipSpace(text, colon + 1);
}

/**
 * Where the string opening at `at` closes: the next quote not escaped by a backslash (the end of
 * the text when none does, so that text which is not JSON ends the scan, not loops it).
 */
function stringEnd(text: string, at: number): number {
  for (let quote = text.indexOf('"', at + 1);; quote = text.indexOf('"', quote + 1)) {
    if (quote === -1) return text.length;
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote;
  }
}

/** Whether `char` ends a number, `true`, `false` or `null`. */
function endsValue(char: number): boolean {
  return char === COMMA || char === CLOSE_BRACE || char === CLOSE_BRACKET || isSpace(char);
}

function isSpace(char: number): boolean {
  return char === 0x20 || char === 0x0a || char === 0x0d || char === 0x09;
}

function skipSpace(text: string, at: number): number {
  while (isSpace(text.charCodeAt(at))) at++;
  return at;
}

/**
 * Notes `from`'s source key order (if it has one) for `to`, a copy of it made with a spread, so a
 * record or turn cotfit rewrites keeps its order too. The spread stays with the caller: one
 * shared copying function would make V8's object cloning slower on every record.
 *
 * @param from The object copied.
 * @param to The copy: `from`'s keys in place, changed values, any new keys after them.
 * @returns `to`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { carryKeyOrder, learnKeyOrder, stringifyInSourceOrder } from "./key_order.ts";
 *
 * const text = '{"value":"a","7":true}';
 * const turn = JSON.parse(text);
 * learnKeyOrder(text, turn);
 * const copy = carryKeyOrder(turn, { ...turn, value: "b" });
 * assert.equal(stringifyInSourceOrder(copy), '{"value":"b","7":true}');
 * assert.equal(JSON.stringify(copy), '{"7":true,"value":"b"}');
 * ```
 */
export function carryKeyOrder<T extends object>(from: object, to: T): T {
  const order = ORDERS.get(from);
  if (order !== undefined) ORDERS.set(to, order);
  return to;
}

/** A container being written: an array (`keys` null) or an object's keys, and the next one. */
interface Frame {
  readonly container: Record<string, unknown> | unknown[];
  readonly keys: readonly string[] | null;
  next: number;
  /** Whether a member was written yet, so the next one needs a comma. */
  wrote: boolean;
}

/**
 * `JSON.stringify(value)`, byte for byte, except that objects noted by {@linkcode learnKeyOrder}
 * (or given their order by {@linkcode carryKeyOrder}) list their keys in source order. Leaves are
 * written by `JSON.stringify` itself, so strings (lone surrogates escaped), numbers and
 * `JSON.rawJSON` values come out the same. For parsed JSON and plain copies of it: `toJSON`
 * methods are not called. Walks without recursion.
 *
 * @param value A parsed JSON value, or a copy of one with fields changed.
 * @returns Its JSON text.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { learnKeyOrder, stringifyInSourceOrder } from "./key_order.ts";
 *
 * const text = '[{"b":"\\ud800","1":1.50}]';
 * const value = JSON.parse(text);
 * learnKeyOrder(text, value);
 * assert.equal(stringifyInSourceOrder(value), '[{"b":"\\ud800","1":1.5}]');
 * assert.equal(stringifyInSourceOrder({ a: [undefined], b: undefined }), '{"a":[null]}');
 * ```
 */
export function stringifyInSourceOrder(value: unknown): string {
  if (!isContainer(value)) return JSON.stringify(value);
  let out = "";
  const stack: Frame[] = [];
  const open = (container: Record<string, unknown> | unknown[]) => {
    const array = Array.isArray(container);
    out += array ? "[" : "{";
    stack.push({ container, keys: array ? null : keysOf(container), next: 0, wrote: false });
  };
  open(value);
  while (stack.length > 0) {
    const frame = stack[stack.length - 1];
    const { container, keys } = frame;
    const length = keys === null ? (container as unknown[]).length : keys.length;
    if (frame.next === length) {
      out += keys === null ? "]" : "}";
      stack.pop();
      continue;
    }
    const at = frame.next++;
    const key = keys === null ? "" : keys[at];
    const item = keys === null
      ? (container as unknown[])[at]
      : (container as Record<string, unknown>)[key];
    const text = isContainer(item) ? null : JSON.stringify(item);
    // Like JSON.stringify: an array writes undefined (a function, a symbol) as null, an object
    // leaves the member out.
    if (keys !== null && text === undefined) continue;
    if (frame.wrote) out += ",";
    frame.wrote = true;
    if (keys !== null) out += JSON.stringify(key) + ":";
    if (text === null) open(item as Record<string, unknown> | unknown[]);
    else out += text ?? "null";
  }
  return out;
}

/** An array or plain object to walk; `JSON.rawJSON` values are leaves. */
function isContainer(value: unknown): value is Record<string, unknown> | unknown[] {
  return typeof value === "object" && value !== null && !RAW_JSON.isRawJSON(value);
}

/** Not yet in TypeScript's lib; in V8, so in Deno. */
const RAW_JSON = JSON as unknown as { isRawJSON(value: unknown): boolean };

/**
 * The keys to write: the noted source order (those the object still has), then any others it
 * gained, in JavaScript's order; JavaScript's order alone when nothing was noted.
 */
function keysOf(object: Record<string, unknown>): readonly string[] {
  const own = Object.keys(object);
  const order = ORDERS.get(object);
  if (order === undefined) return own;
  const keys = order.filter((key) => Object.hasOwn(object, key));
  if (keys.length === own.length) return keys;
  const noted = new Set(keys);
  return [...keys, ...own.filter((key) => !noted.has(key))];
}
