/**
 * Bounded concurrency primitives: an order-keeping map stream for records and a limiter for LLM
 * calls. Records may each need several calls, so the two bounds are separate: the map window
 * bounds memory (records held), the limiter bounds spend (calls in flight).
 *
 * @module
 */

/** Options of {@linkcode mapOrdered}. */
export interface MapOrderedOptions<I = unknown> {
  /**
   * How many items may be in progress or waiting for an earlier one at once.
   *
   * @default {16}
   */
  window?: number;
  /**
   * Weight of an item (e.g. its size in bytes); items are held back while the weight of those in
   * the window reaches `maxWeight`, so a window of many small records stays cheap and a few huge
   * ones cannot blow memory. One item is always let in.
   *
   * @default {() => 0}
   */
  weigh?: (item: I) => number;
  /** @default {Infinity} */
  maxWeight?: number;
  /**
   * Awaited (when it returns a promise) before the next item is taken: lets a later stage say it
   * could not start more work yet, so items are not started only to wait there.
   */
  ready?: () => Promise<void> | undefined;
}

/**
 * Maps items through an async function with at most `window` in progress, emitting results in
 * input order as soon as every earlier result is out. A rejection of `fn` errors the stream.
 *
 * @example Results keep input order
 * ```ts
 * import assert from "node:assert/strict";
 * import { mapOrdered } from "./pool.ts";
 * const delays = [30, 0, 10];
 * const out = ReadableStream.from(delays).pipeThrough(
 *   mapOrdered((ms: number) => new Promise<number>((ok) => setTimeout(() => ok(ms), ms)), { window: 3 }),
 * );
 * assert.deepEqual(await Array.fromAsync(out), [30, 0, 10]);
 * ```
 *
 * @param fn The async mapping; it should settle every item (outcomes as values, not throws).
 * @param options The window size.
 * @returns A stream whose readable side yields the results in input order.
 */
export function mapOrdered<I, O>(
  fn: (item: I) => Promise<O>,
  options: MapOrderedOptions<I> = {},
): TransformStream<I, O> {
  const window = Math.max(1, options.window ?? 16);
  const { weigh, maxWeight = Infinity } = options;
  // Each slot settles to its value; the head is emitted once settled, then the next, and so on.
  const queue: { done: boolean; value?: O; weight: number }[] = [];
  let weight = 0;
  let failure: { error: unknown } | null = null;
  // Settles when `fn` rejects, so a wait on `ready` cannot outlive the stream's failure.
  const failed = Promise.withResolvers<void>();
  let wake: (() => void) | null = null;
  let controllerRef: TransformStreamDefaultController<O>;

  function drain() {
    try {
      while (queue.length > 0 && queue[0].done) {
        const head = queue.shift()!;
        weight -= head.weight;
        controllerRef.enqueue(head.value as O);
      }
    } catch (error) {
      // The readable side was cancelled: nobody wants more results.
      failure ??= { error };
    }
    const resume = wake;
    wake = null;
    resume?.();
  }

  function throwIfFailed(): void {
    if (failure) throw failure.error;
  }

  function waitForProgress(): Promise<void> {
    return new Promise((resolve) => wake = resolve);
  }

  return new TransformStream<I, O>(
    {
      start(controller) {
        controllerRef = controller;
      },
      async transform(item) {
        const slot: { done: boolean; value?: O; weight: number } = {
          done: false,
          weight: weigh?.(item) ?? 0,
        };
        queue.push(slot);
        weight += slot.weight;
        fn(item).then(
          (value) => {
            slot.value = value;
            slot.done = true;
            drain();
          },
          (error) => {
            failure ??= { error };
            failed.resolve();
            const resume = wake;
            wake = null;
            resume?.();
          },
        );
        while (
          (queue.length >= window || (weight >= maxWeight && queue.length > 0)) &&
          failure === null
        ) {
          await waitForProgress();
        }
        throwIfFailed();
        const ready = options.ready?.();
        if (ready) await Promise.race([ready, failed.promise]);
        throwIfFailed();
      },
      async flush() {
        while (queue.length > 0 && failure === null) await waitForProgress();
        if (failure) throw failure.error;
      },
    },
    undefined,
    { highWaterMark: window },
  );
}

/**
 * A {@linkcode MapOrderedOptions.ready} hook for items that run their calls through `limiter`:
 * it holds the next item back while an eighth of the limiter's `size` (at least 64) calls already
 * wait for a slot. An item started beyond that would only wait too, holding its parsed record
 * and rendered prompt, which every scavenge then copies; items sleeping out a retry backoff or
 * answered from the cache wait for no slot, so they never hold the stream back. At concurrency
 * 1,024 with a 200 ms endpoint, 128 waiting calls instead of 256 gave 2.5% more conversations a
 * second (median of 10 paired runs, 9 faster) for 4% less CPU; 48 had given 5% fewer.
 *
 * While calls run and none waits for a slot (a run's start, when slots are free), it also yields
 * to the event loop (`setImmediate`) once items have been let through back to back for
 * {@linkcode ADMIT_YIELD_MS}: Deno polls sockets only when JavaScript lets the event loop wait,
 * so during such a burst the connections just opened are not seen and the calls started do not
 * go out. Measured at concurrency 1,024 with a 200 ms endpoint: the first 1,024 replies were all
 * handled by 0.53 to 0.83 s with the yield, against 1.03 to 1.33 s without; with a 0 ms
 * endpoint at concurrency 256, 7,750 to 8,230 conversations/s for 2.5 s of CPU, against 6,970 to
 * 7,080/s for 3.1 s. The yield was a 0 ms timer, which left the thread idle 1 to 4 ms each time;
 * with `setImmediate` all 1,024 slots were busy 0.26 to 0.29 s into a run instead of 1.1 to 1.3 s.
 * But `setImmediate` does not let Deno poll sockets: with a 200 ms burst cut into 4 ms pieces by
 * it, 100 connects finished only when the burst ended (205 ms), against 24 to 28 ms with a 0 ms
 * timer and 12 ms with an async `crypto.subtle.digest`. So the first request is written once the
 * slots are filled (0.20 to 0.22 s in, against 0.28 to 0.31 s with no yield: 2 runs each). Letting
 * sockets in during the start (a 0 ms timer or the digest, 2 runs each) wrote the first requests
 * at 17 to 69 ms but the 1,024th later (0.41 to 0.68 s, against 0.34 to 0.40 s), and was no faster
 * overall (4,404 to 4,686/s, unpaired, against 4,547 to 4,578/s). Once calls wait for slots,
 * or when none runs (cache hits), there is no yield: yielding there cost throughput (the digest
 * there: -1%, 6 paired runs).
 *
 * @param limiter The limiter the items' calls go through.
 * @param size Its size.
 * @returns The hook.
 */
export function whileQueueShort(
  limiter: Pick<Limiter, "queueBelow" | "waiting" | "active">,
  size: number,
): () => Promise<void> | undefined {
  const lookahead = Math.max(64, Math.ceil(size / 8));
  let busySince = performance.now();
  const rested = () => void (busySince = performance.now());
  return () => {
    const held = limiter.queueBelow(lookahead);
    if (held) return held.then(rested);
    if (limiter.waiting > 0 || limiter.active === 0) return void rested();
    if (performance.now() - busySince < ADMIT_YIELD_MS) return undefined;
    return new Promise<void>((resolve) => setImmediate(resolve)).then(rested);
  };
}

/** How long {@linkcode whileQueueShort} lets items through back to back before it yields. */
export const ADMIT_YIELD_MS = 4;

/** A counting semaphore: `run` waits for a free slot, so at most `size` calls run at once. */
export interface Limiter {
  run<T>(task: () => Promise<T>): Promise<T>;
  /**
   * Takes a slot: `undefined` when one was free, else a promise that resolves once one is handed
   * over. Every slot taken must be given back with {@linkcode Limiter.release}. For a hot path
   * that should not await through `run`'s extra async functions, which are kept for the task's
   * whole life.
   */
  acquire(): Promise<void> | undefined;
  /** Gives back a slot taken with {@linkcode Limiter.acquire}, to the first waiter if any. */
  release(): void;
  /** Tasks running now. */
  readonly active: number;
  /** Tasks waiting for a slot. */
  readonly waiting: number;
  /**
   * `undefined` while fewer than `count` tasks wait for a slot; otherwise a promise that resolves
   * once fewer do.
   */
  queueBelow(count: number): Promise<void> | undefined;
}

/**
 * Creates a {@linkcode Limiter} of the given size; waiters are served first come, first served.
 *
 * @example At most two at once
 * ```ts
 * import assert from "node:assert/strict";
 * import { createLimiter } from "./pool.ts";
 * const limiter = createLimiter(2);
 * let peak = 0;
 * await Promise.all([1, 2, 3, 4].map(() =>
 *   limiter.run(async () => {
 *     peak = Math.max(peak, limiter.active);
 *     await new Promise((ok) => setTimeout(ok, 5));
 *   })
 * ));
 * assert.equal(peak, 2);
 * ```
 *
 * @param size The most tasks that may run at once.
 * @returns The limiter.
 */
export function createLimiter(size: number): Limiter {
  let active = 0;
  const waiters: (() => void)[] = [];
  // Callers of queueBelow, each with the queue length it waits for.
  let watchers: { below: number; resolve: () => void }[] = [];
  function served() {
    if (watchers.length === 0) return;
    const still = [];
    for (const watcher of watchers) {
      if (waiters.length < watcher.below) watcher.resolve();
      else still.push(watcher);
    }
    watchers = still;
  }
  return {
    get active() {
      return active;
    },
    get waiting() {
      return waiters.length;
    },
    queueBelow(count) {
      if (waiters.length < count) return undefined;
      return new Promise<void>((resolve) => watchers.push({ below: count, resolve }));
    },
    async run<T>(task: () => Promise<T>): Promise<T> {
      const wait = acquire();
      if (wait) await wait;
      try {
        return await task();
      } finally {
        release();
      }
    },
    acquire,
    release,
  };

  function acquire(): Promise<void> | undefined {
    if (active < size) {
      active++;
      return undefined;
    }
    return new Promise<void>((resolve) => waiters.push(resolve));
  }

  function release(): void {
    // Hand the slot straight to the next waiter so `active` never dips and lets a newcomer jump the queue.
    const next = waiters.shift();
    if (next) {
      next();
      served();
    } else active--;
  }
}
