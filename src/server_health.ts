/**
 * Whether the upstream LLM answered recently, for `GET /healthz` and `/metrics`. The engine
 * counts calls and failures in its usage meter; this watches those counters move.
 *
 * @module
 */

import type { UsageSnapshot } from "./usage.ts";

/** What the server knows about its upstream endpoint. */
export interface UpstreamStatus {
  /** `ok`: the latest event was a reply; `failing`: a failed call; `unknown`: no call yet. */
  readonly state: "ok" | "failing" | "unknown";
  /** When a call last got a reply, in epoch milliseconds. */
  readonly lastSuccessMs: number | null;
  /** When a call last failed (unreachable, 5xx, 429, refused...), in epoch milliseconds. */
  readonly lastFailureMs: number | null;
}

/**
 * Tracks the last success and failure of upstream calls. Feed it the meter's counters after
 * each turn ({@linkcode UpstreamHealth.observe}) and failures seen directly
 * ({@linkcode UpstreamHealth.failed}).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { UpstreamHealth } from "./server_health.ts";
 *
 * let now = 1_000;
 * const health = new UpstreamHealth(() => now);
 * assert.equal(health.status().state, "unknown");
 * health.observe({ calls: 1, failures: {} });
 * now = 2_000;
 * health.observe({ calls: 1, failures: { "upstream 503": 2, "no tags": 1 } });
 * assert.deepEqual(health.status(), { state: "failing", lastSuccessMs: 1_000, lastFailureMs: 2_000 });
 * ```
 */
export class UpstreamHealth {
  readonly #now: () => number;
  #calls = 0;
  #failures = 0;
  #lastSuccessMs: number | null = null;
  #lastFailureMs: number | null = null;

  /** @param now The wall clock, in epoch milliseconds. */
  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /**
   * Notes a success when the meter counted new replies, and a failure when it counted new
   * upstream failures (its failure names starting with `upstream`; invalid thoughts are replies).
   */
  observe(usage: Pick<UsageSnapshot, "calls" | "failures">): void {
    let failures = 0;
    for (const [reason, count] of Object.entries(usage.failures)) {
      if (reason.startsWith("upstream")) failures += count;
    }
    if (usage.calls === this.#calls && failures === this.#failures) return;
    const now = this.#now();
    if (usage.calls > this.#calls) this.#lastSuccessMs = now;
    if (failures > this.#failures) this.#lastFailureMs = now;
    this.#calls = usage.calls;
    this.#failures = failures;
  }

  /** Notes a failure the meter does not count (the upstream refused the key or model). */
  failed(): void {
    this.#lastFailureMs = this.#now();
  }

  /** The state and the times of the last success and failure. */
  status(): UpstreamStatus {
    const success = this.#lastSuccessMs;
    const failure = this.#lastFailureMs;
    const state = failure !== null && (success === null || failure > success)
      ? "failing"
      : success !== null
      ? "ok"
      : "unknown";
    return { state, lastSuccessMs: success, lastFailureMs: failure };
  }
}
