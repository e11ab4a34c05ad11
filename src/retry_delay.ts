/**
 * How long to wait before retrying a failed call: the server's wait hint, else exponential
 * backoff with jitter.
 *
 * @module
 */

/** The longest wait a server's `retry-after` may ask for. */
const RETRY_AFTER_MAX_MS = 60_000;

/** Options of {@linkcode retryDelay}. */
export interface RetryDelayOptions {
  /** The server's wait hint from `LlmError.retryAfterMs`; wins over the backoff. */
  retryAfterMs?: number;
  /**
   * Delay before the first retry, before jitter.
   * @default {500}
   */
  baseMs?: number;
  /**
   * Ceiling of the exponential backoff.
   * @default {30_000}
   */
  maxMs?: number;
  /**
   * Source of jitter in [0, 1).
   * @default {Math.random}
   */
  random?: () => number;
}

/**
 * How long to wait before retry number `attempt` (1 for the first retry).
 *
 * With `retryAfterMs` the wait is what the server asked, capped at 60 s, plus up to 10% so
 * that workers told the same thing do not come back in lockstep (still capped at 60 s).
 * Otherwise it is exponential backoff with *equal jitter*: the step `min(maxMs, baseMs * 2 **
 * (attempt - 1))` is halved, one half always waited and the other randomised, so the delay lies
 * in `[step / 2, step)`: spread out, yet never a near-zero hammering retry.
 *
 * @param attempt 1-based number of the retry about to happen.
 * @param options Server hint, backoff bounds and the jitter source.
 * @returns The delay in milliseconds.
 * @throws {RangeError} when `attempt` is not an integer >= 1.
 *
 * @example Backoff bounds
 * ```ts
 * import assert from "node:assert/strict";
 * import { retryDelay } from "./retry_delay.ts";
 *
 * assert.equal(retryDelay(1, { random: () => 0 }), 250);
 * assert.equal(retryDelay(3, { random: () => 0 }), 1_000);
 * assert.equal(retryDelay(20, { random: () => 0 }), 15_000);
 * assert.equal(retryDelay(1, { retryAfterMs: 1_000, random: () => 0 }), 1_000);
 * ```
 */
export function retryDelay(attempt: number, options: RetryDelayOptions = {}): number {
  if (!Number.isInteger(attempt) || attempt < 1) {
    throw new RangeError(
      `Cannot compute retry delay: attempt must be an integer >= 1, got ${attempt}`,
    );
  }
  const { retryAfterMs, baseMs = 500, maxMs = 30_000, random = Math.random } = options;
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) {
    const asked = Math.min(retryAfterMs, RETRY_AFTER_MAX_MS);
    return Math.min(RETRY_AFTER_MAX_MS, asked + asked * 0.1 * random());
  }
  const step = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
  return step / 2 + (step / 2) * random();
}
