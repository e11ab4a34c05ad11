/**
 * Record selection in one streaming pass: the first n items, or a seeded uniform sample.
 *
 * @module
 */

/** How many more items a run takes, shared by the streams of its inputs read one after another. */
export interface RecordBudget {
  remaining: number;
}

/**
 * Passes the first `n` items through, then closes its output and cancels its input, so a
 * pipeline reading a huge file stops reading once it has enough. Given a {@linkcode RecordBudget},
 * it spends from it, so streams read one after another take `n` items in all.
 *
 * @typeParam T The item type.
 * @param n How many items to keep (a non-negative integer), or the budget to spend.
 * @returns A stream of at most `n` items.
 * @throws {RangeError} When `n` is not a non-negative integer.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { limitStream } from "./sample.ts";
 *
 * const items = [1, 2, 3, 4].map((line) => ({ line }));
 * const out = ReadableStream.from(items).pipeThrough(limitStream(2));
 * assert.deepEqual(await Array.fromAsync(out), [{ line: 1 }, { line: 2 }]);
 *
 * const budget = { remaining: 3 };
 * const first = ReadableStream.from(items).pipeThrough(limitStream(budget));
 * assert.equal((await Array.fromAsync(first)).length, 3);
 * const second = ReadableStream.from(items).pipeThrough(limitStream(budget));
 * assert.deepEqual(await Array.fromAsync(second), []);
 * ```
 */
export function limitStream<T>(n: number | RecordBudget): TransformStream<T, T> {
  const budget = typeof n === "number" ? { remaining: n } : n;
  checkCount(budget.remaining);
  return new TransformStream<T, T>({
    start(controller) {
      if (budget.remaining === 0) controller.terminate();
    },
    transform(item, controller) {
      controller.enqueue(item);
      budget.remaining -= 1;
      // terminate() errors the writable side, which makes pipeTo cancel the source upstream.
      if (budget.remaining === 0) controller.terminate();
    },
  });
}

/**
 * Where a uniform sample of a sequence of known length stands: how many items it still needs and
 * how many are left to pass. Shared by the streams of inputs read one after another, it samples
 * them as one sequence.
 */
export interface Selection {
  needed: number;
  left: number;
  readonly random: () => number;
}

/**
 * Starts a seeded uniform sample of `size` items out of `total` (see {@linkcode selectStream}).
 *
 * @param size How many items to pick.
 * @param total How many items the streams will pass, counted beforehand.
 * @param seed Any integer; the same seed picks the same items.
 * @returns The selection's state.
 * @throws {RangeError} When a count is not a non-negative integer or `seed` not an integer.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { selection } from "./sample.ts";
 *
 * const picked = selection(5, 3, 1);
 * assert.deepEqual([picked.needed, picked.left], [3, 3]);
 * ```
 */
export function selection(size: number, total: number, seed: number): Selection {
  checkCount(size);
  checkCount(total);
  return { needed: Math.min(size, total), left: total, random: seededRandom(seed) };
}

/**
 * Passes each item on with the probability that makes the picks a uniform sample of the
 * selection's size (selection sampling: Knuth's Algorithm S), in input order, holding nothing;
 * once the sample is complete it stops reading. Unlike {@linkcode sampleStream} it needs the
 * total beforehand, and in return spans several inputs, each written as it is read.
 *
 * @typeParam T The item type.
 * @param picked The selection, from {@linkcode selection}; spent as items pass.
 * @returns A stream of the picked items.
 *
 * @example Two inputs sampled as one
 * ```ts
 * import assert from "node:assert/strict";
 * import { selection, selectStream } from "./sample.ts";
 *
 * const picked = selection(4, 20, 7);
 * const items = (from: number) => Array.from({ length: 10 }, (_, i) => from + i);
 * const a = await Array.fromAsync(ReadableStream.from(items(0)).pipeThrough(selectStream(picked)));
 * const b = await Array.fromAsync(ReadableStream.from(items(10)).pipeThrough(selectStream(picked)));
 * assert.equal(a.length + b.length, 4);
 * assert.equal(picked.needed, 0);
 * ```
 */
export function selectStream<T>(picked: Selection): TransformStream<T, T> {
  return new TransformStream<T, T>({
    start(controller) {
      if (picked.needed <= 0) controller.terminate();
    },
    transform(item, controller) {
      // An input grown since it was counted cannot make `left` negative: past it, none is picked.
      if (picked.left > 0 && picked.random() * picked.left < picked.needed) {
        controller.enqueue(item);
        picked.needed -= 1;
      }
      picked.left -= 1;
      if (picked.needed <= 0) controller.terminate();
    },
  });
}

/**
 * Picks a uniform random sample of exactly `n` items (all of them if there are fewer) by
 * reservoir sampling, and emits it in input order once the input ends. The same seed and
 * input give the same sample. Holds `n` items at most.
 *
 * @typeParam T The item type.
 * @param n The sample size; a non-negative integer.
 * @param seed Any integer; the same seed picks the same items.
 * @returns A stream of the sampled items, in input order.
 * @throws {RangeError} When `n` is not a non-negative integer or `seed` not an integer.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { sampleStream } from "./sample.ts";
 *
 * const items = Array.from({ length: 100 }, (_, i) => ({ line: i + 1 }));
 * const pick = async () =>
 *   await Array.fromAsync(ReadableStream.from(items).pipeThrough(sampleStream(5, 42)));
 * const sample = await pick();
 * assert.equal(sample.length, 5);
 * assert.deepEqual(sample, await pick());
 * assert.deepEqual(sample, sample.toSorted((a, b) => a.line - b.line));
 * ```
 */
export function sampleStream<T>(n: number, seed: number): TransformStream<T, T> {
  checkCount(n);
  const random = seededRandom(seed);
  const reservoir: T[] = [];
  // Input positions of the reservoir's items, to restore input order at the end.
  const positions: number[] = [];
  let seen = 0;
  return new TransformStream<T, T>({
    // Algorithm R: item i (0-based) replaces a random slot with probability n / (i + 1).
    transform(item) {
      if (seen < n) {
        reservoir.push(item);
        positions.push(seen);
      } else {
        const slot = Math.floor(random() * (seen + 1));
        if (slot < n) {
          reservoir[slot] = item;
          positions[slot] = seen;
        }
      }
      seen += 1;
    },
    flush(controller) {
      const order = positions.map((_, slot) => slot).sort((a, b) => positions[a] - positions[b]);
      for (const slot of order) controller.enqueue(reservoir[slot]);
    },
  });
}

/**
 * A small seeded pseudo-random generator (mulberry32): fast, 32-bit state, not for secrets.
 *
 * @param seed Any integer; it is taken modulo 2^32.
 * @returns A function returning floats in `[0, 1)`, the same sequence for the same seed.
 * @throws {RangeError} When `seed` is not an integer.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { seededRandom } from "./sample.ts";
 *
 * const a = seededRandom(7);
 * const b = seededRandom(7);
 * const value = a();
 * assert.equal(value, b());
 * assert.ok(value >= 0 && value < 1);
 * ```
 */
export function seededRandom(seed: number): () => number {
  if (!Number.isInteger(seed)) {
    throw new RangeError(`Cannot use seed ${seed}: it must be an integer`);
  }
  let state = seed >>> 0;
  return function next(): number {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function checkCount(n: number): void {
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`Cannot take ${n} items: the count must be a non-negative integer`);
  }
}
