import assert from "node:assert/strict";
import { limitStream, sampleStream, seededRandom } from "../src/sample.ts";

interface Item {
  readonly line: number;
}

function items(count: number): Item[] {
  return Array.from({ length: count }, (_, i) => ({ line: i + 1 }));
}

async function run<T>(input: readonly T[], stream: TransformStream<T, T>): Promise<T[]> {
  return await Array.fromAsync(ReadableStream.from(input).pipeThrough(stream));
}

/** An endless source that records how often it was pulled and whether it was cancelled. */
function endlessSource(): {
  stream: ReadableStream<Item>;
  pulls: () => number;
  cancelled: Promise<void>;
} {
  let pulls = 0;
  const { promise: cancelled, resolve } = Promise.withResolvers<void>();
  const stream = new ReadableStream<Item>({
    pull(controller) {
      pulls += 1;
      controller.enqueue({ line: pulls });
    },
    cancel() {
      resolve();
    },
  });
  return { stream, pulls: () => pulls, cancelled };
}

Deno.test("limitStream() keeps the first n items in order", async () => {
  assert.deepEqual(await run(items(10), limitStream(3)), items(3));
  assert.deepEqual(await run(items(2), limitStream(5)), items(2));
  assert.deepEqual(await run(items(0), limitStream(5)), []);
});

Deno.test("limitStream() stops reading and cancels the source once it has n items", async () => {
  const source = endlessSource();
  const out = await Array.fromAsync(source.stream.pipeThrough(limitStream<Item>(5)));
  assert.deepEqual(out, items(5));
  await source.cancelled;
  // A few items may be buffered ahead by the queues, never the whole input.
  assert.ok(source.pulls() < 10, `pulled ${source.pulls()} items`);
});

Deno.test("limitStream() cancels the source through the stages before it", async () => {
  const source = endlessSource();
  const out = await Array.fromAsync(
    source.stream
      .pipeThrough(new TransformStream<Item, Item>())
      .pipeThrough(new TransformStream<Item, Item>())
      .pipeThrough(limitStream<Item>(3)),
  );
  assert.deepEqual(out, items(3));
  await source.cancelled;
  assert.ok(source.pulls() < 10, `pulled ${source.pulls()} items`);
});

Deno.test("limitStream() with 0 reads nothing and cancels the source", async () => {
  const source = endlessSource();
  assert.deepEqual(await Array.fromAsync(source.stream.pipeThrough(limitStream<Item>(0))), []);
  await source.cancelled;
  assert.ok(source.pulls() < 10, `pulled ${source.pulls()} items`);
});

Deno.test("limitStream() and sampleStream() reject counts that are not non-negative integers", () => {
  for (const n of [-1, 1.5, Number.NaN, Infinity]) {
    assert.throws(() => limitStream(n), RangeError);
    assert.throws(() => sampleStream(n, 1), RangeError);
  }
  assert.throws(() => sampleStream(1, 0.5), RangeError);
});

Deno.test("sampleStream() picks exactly n distinct items", async () => {
  const sample = await run(items(1000), sampleStream(37, 1));
  assert.equal(sample.length, 37);
  assert.equal(new Set(sample.map((item) => item.line)).size, 37);
  assert.ok(sample.every((item) => item.line >= 1 && item.line <= 1000));
});

Deno.test("sampleStream() keeps every item when there are fewer than n", async () => {
  assert.deepEqual(await run(items(5), sampleStream(10, 1)), items(5));
  assert.deepEqual(await run(items(5), sampleStream(5, 1)), items(5));
  assert.deepEqual(await run(items(5), sampleStream(0, 1)), []);
});

Deno.test("sampleStream() gives the same sample for the same seed and another for another seed", async () => {
  const a = await run(items(500), sampleStream(20, 1234));
  const b = await run(items(500), sampleStream(20, 1234));
  const c = await run(items(500), sampleStream(20, 1235));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("sampleStream() emits in input order, not by line number", async () => {
  // Input order differs from line order (e.g. several JSON array elements on one line).
  const input = Array.from({ length: 200 }, (_, i) => ({ line: 1000 - (i % 7), position: i }));
  const sample = await run(input, sampleStream(30, 99));
  const positions = sample.map((item) => item.position);
  assert.deepEqual(positions, positions.toSorted((x, y) => x - y));
  assert.equal(sample.length, 30);
});

Deno.test("sampleStream() picks each item about n/N of the time over many seeds", async () => {
  const total = 20;
  const size = 5;
  const seeds = 4000;
  const picks = new Array<number>(total).fill(0);
  for (let seed = 0; seed < seeds; seed++) {
    for (const item of await run(items(total), sampleStream(size, seed))) picks[item.line - 1] += 1;
  }
  const expected = (seeds * size) / total; // 1000; one standard deviation is about 27
  for (const [index, count] of picks.entries()) {
    assert.ok(Math.abs(count - expected) < 150, `item ${index + 1} picked ${count} times`);
  }
});

Deno.test("seededRandom() repeats per seed and spreads over [0, 1)", () => {
  const a = seededRandom(42);
  const b = seededRandom(42);
  const c = seededRandom(43);
  const first = Array.from({ length: 5 }, a);
  assert.deepEqual(first, Array.from({ length: 5 }, b));
  assert.notDeepEqual(first, Array.from({ length: 5 }, c));
  const next = seededRandom(7);
  let sum = 0;
  const buckets = new Array<number>(10).fill(0);
  for (let i = 0; i < 100_000; i++) {
    const value = next();
    assert.ok(value >= 0 && value < 1);
    sum += value;
    buckets[Math.floor(value * 10)] += 1;
  }
  assert.ok(Math.abs(sum / 100_000 - 0.5) < 0.01);
  for (const count of buckets) assert.ok(Math.abs(count - 10_000) < 500, `bucket ${count}`);
  assert.equal(seededRandom(2 ** 32 + 5)(), seededRandom(5)());
});
