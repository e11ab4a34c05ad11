import assert from "node:assert/strict";
import { ADMIT_YIELD_MS, createLimiter, mapOrdered, whileQueueShort } from "../src/pool.ts";

function delay<T>(ms: number, value: T): Promise<T> {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms));
}

Deno.test("mapOrdered() keeps input order when later items finish first", async () => {
  const delays = [40, 5, 25, 0, 15, 30, 1];
  const out = ReadableStream.from(delays).pipeThrough(
    mapOrdered((ms: number) => delay(ms, ms), { window: 4 }),
  );
  assert.deepEqual(await Array.fromAsync(out), delays);
});

Deno.test("mapOrdered() never runs more than window items at once", async () => {
  let running = 0;
  let peak = 0;
  const out = ReadableStream.from(Array.from({ length: 50 }, (_, i) => i)).pipeThrough(
    mapOrdered(async (i: number) => {
      running++;
      peak = Math.max(peak, running);
      await delay(i % 3, null);
      running--;
      return i;
    }, { window: 5 }),
  );
  const results = await Array.fromAsync(out);
  assert.equal(results.length, 50);
  assert.ok(peak <= 5, `peak ${peak}`);
  assert.ok(peak >= 4, `the window is used, peak ${peak}`);
});

Deno.test("mapOrdered() emits the head before the input ends", async () => {
  const { readable, writable } = mapOrdered((n: number) => Promise.resolve(n * 2), { window: 8 });
  const writer = writable.getWriter();
  const reader = readable.getReader();
  const written = writer.write(21);
  // The input is still open, yet the first result is readable.
  assert.deepEqual(await reader.read(), { done: false, value: 42 });
  await written;
  const closed = writer.close();
  assert.equal((await reader.read()).done, true);
  await closed;
});

Deno.test("mapOrdered() errors the stream when the mapping rejects", async () => {
  const out = ReadableStream.from([1, 2, 3]).pipeThrough(
    mapOrdered((n: number) => n === 2 ? Promise.reject(new RangeError("two")) : delay(5, n)),
  );
  await assert.rejects(() => Array.fromAsync(out), RangeError);
});

Deno.test("createLimiter() serves waiters in order and bounds concurrency", async () => {
  const limiter = createLimiter(2);
  const started: number[] = [];
  let peak = 0;
  await Promise.all([0, 1, 2, 3, 4].map((i) =>
    limiter.run(async () => {
      started.push(i);
      peak = Math.max(peak, limiter.active);
      await delay(5, null);
    })
  ));
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  assert.equal(peak, 2);
  assert.equal(limiter.active, 0);
  assert.equal(limiter.waiting, 0);
});

Deno.test("createLimiter() acquire() takes a free slot at once and hands released ones over in order", async () => {
  const limiter = createLimiter(1);
  assert.equal(limiter.acquire(), undefined);
  const order: string[] = [];
  const second = limiter.acquire()!.then(() => order.push("second"));
  const third = limiter.acquire()!.then(() => order.push("third"));
  assert.equal(limiter.waiting, 2);
  limiter.release();
  await second;
  assert.deepEqual(order, ["second"]);
  assert.equal(limiter.active, 1);
  limiter.release();
  await third;
  limiter.release();
  assert.deepEqual(order, ["second", "third"]);
  assert.equal(limiter.active, 0);
  assert.equal(limiter.acquire(), undefined);
  limiter.release();
});

Deno.test("createLimiter() frees the slot when a task throws", async () => {
  const limiter = createLimiter(1);
  await assert.rejects(() => limiter.run(() => Promise.reject(new Error("boom"))));
  assert.equal(await limiter.run(() => Promise.resolve("next")), "next");
  assert.equal(limiter.active, 0);
});

Deno.test("mapOrdered() holds items back while the window's weight is at its cap", async () => {
  let running = 0;
  let peak = 0;
  const out = ReadableStream.from([5, 5, 5, 1, 1, 1, 1, 1]).pipeThrough(
    mapOrdered(async (size: number) => {
      running++;
      peak = Math.max(peak, running);
      await delay(5, null);
      running--;
      return size;
    }, { window: 100, weigh: (size) => size, maxWeight: 10 }),
  );
  assert.deepEqual(await Array.fromAsync(out), [5, 5, 5, 1, 1, 1, 1, 1]);
  assert.ok(peak <= 6, `peak ${peak}`);
});

Deno.test("mapOrdered() lets one item in even when it alone is over the weight cap", async () => {
  const out = ReadableStream.from([50, 60]).pipeThrough(
    mapOrdered((size: number) => Promise.resolve(size), { weigh: (size) => size, maxWeight: 10 }),
  );
  assert.deepEqual(await Array.fromAsync(out), [50, 60]);
});

Deno.test("createLimiter().queueBelow() waits until fewer tasks than asked wait", async () => {
  const limiter = createLimiter(1);
  const gates: (() => void)[] = [];
  const task = () => new Promise<void>((resolve) => gates.push(resolve));
  const runs = [limiter.run(task), limiter.run(task), limiter.run(task)];
  assert.equal(limiter.waiting, 2);
  assert.equal(limiter.queueBelow(3), undefined);
  let belowTwo = false;
  let belowOne = false;
  limiter.queueBelow(2)!.then(() => belowTwo = true);
  limiter.queueBelow(1)!.then(() => belowOne = true);
  await delay(5, null);
  assert.deepEqual([belowTwo, belowOne], [false, false]);
  gates[0](); // the first waiter gets the slot: one waits
  await delay(5, null);
  assert.deepEqual([belowTwo, belowOne], [true, false]);
  gates[1]();
  await delay(5, null);
  assert.deepEqual([belowTwo, belowOne], [true, true]);
  gates[2]();
  await Promise.all(runs);
});

Deno.test("mapOrdered() takes no item while ready() is pending, then goes on", async () => {
  const started: number[] = [];
  const open = Promise.withResolvers<void>();
  let closed = true;
  const out = ReadableStream.from([1, 2, 3, 4, 5]).pipeThrough(
    mapOrdered((n: number) => {
      started.push(n);
      return Promise.resolve(n * 10);
    }, { window: 10, ready: () => closed ? open.promise : undefined }),
  );
  const results = Array.fromAsync(out);
  await delay(10, null);
  // The first item is taken, then the stream waits on ready() before the second.
  assert.deepEqual(started, [1]);
  closed = false;
  open.resolve();
  assert.deepEqual(await results, [10, 20, 30, 40, 50]);
  assert.deepEqual(started, [1, 2, 3, 4, 5]);
});

Deno.test("mapOrdered() errors instead of hanging when the mapping rejects during ready()", async () => {
  const never = new Promise<void>(() => {});
  const out = ReadableStream.from([1, 2]).pipeThrough(
    mapOrdered((n: number) => n === 1 ? Promise.reject(new Error("boom")) : Promise.resolve(n), {
      ready: () => never,
    }),
  );
  await assert.rejects(Array.fromAsync(out), /boom/);
});

Deno.test("whileQueueShort() holds items back once an eighth of the size (at least 64) waits", async () => {
  for (const [size, lookahead] of [[1024, 128], [8, 64]]) {
    const limiter = createLimiter(size);
    const ready = whileQueueShort(limiter, size);
    const gate = Promise.withResolvers<void>();
    const runs = Array.from(
      { length: size + lookahead - 1 },
      () => limiter.run(() => gate.promise),
    );
    assert.equal(ready(), undefined, `size ${size}: ${lookahead - 1} waiting`);
    runs.push(limiter.run(() => gate.promise));
    const held = ready();
    assert.ok(held instanceof Promise, `size ${size}: ${lookahead} waiting`);
    gate.resolve();
    await held;
    await Promise.all(runs);
  }
});

Deno.test("whileQueueShort() yields to the event loop after letting items through for a while", async () => {
  const limiter = createLimiter(4);
  const ready = whileQueueShort(limiter, 4);
  // A run's start: a call is on its way, slots are free, records keep coming.
  const gate = Promise.withResolvers<void>();
  const running = limiter.run(() => gate.promise);
  assert.equal(ready(), undefined, "an item right away is let through without a wait");
  // A timer queued before the burst must fire before the wait ends: the wait is a macrotask,
  // not a microtask that would keep the event loop from polling.
  let timerFired = false;
  setTimeout(() => timerFired = true, 0);
  const start = performance.now();
  let admitted = 0;
  let held: Promise<void> | undefined;
  // Admissions back to back, as when a burst of records arrives and every slot is free.
  while ((held = ready()) === undefined) admitted++;
  assert.ok(performance.now() - start >= ADMIT_YIELD_MS - 1, "not before the busy time is up");
  assert.ok(admitted > 0);
  assert.equal(timerFired, false);
  await held;
  assert.equal(timerFired, true);
  assert.equal(ready(), undefined, "the busy time starts again after the yield");
  gate.resolve();
  await running;
});

Deno.test("whileQueueShort() does not yield while no call runs (cache hits)", () => {
  const ready = whileQueueShort(createLimiter(4), 4);
  const start = performance.now();
  while (performance.now() - start < 3 * ADMIT_YIELD_MS) assert.equal(ready(), undefined);
});

Deno.test("whileQueueShort() does not yield while calls wait for a slot", async () => {
  const limiter = createLimiter(1);
  const ready = whileQueueShort(limiter, 1);
  const gate = Promise.withResolvers<void>();
  const runs = [limiter.run(() => gate.promise), limiter.run(() => gate.promise)];
  assert.equal(limiter.waiting, 1);
  const start = performance.now();
  while (performance.now() - start < 3 * ADMIT_YIELD_MS) {
    assert.equal(ready(), undefined);
  }
  gate.resolve();
  await Promise.all(runs);
});
