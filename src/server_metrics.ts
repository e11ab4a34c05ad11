/**
 * The server's counters and their Prometheus text exposition for `GET /metrics`. Records, calls,
 * tokens and cache hits come from the engine's usage meter; this adds the HTTP side.
 *
 * @module
 */

import type { UpstreamStatus } from "./server_health.ts";
import type { UsageSnapshot } from "./usage.ts";

/** Why a request failed or ended early, as counted in `cotfit_request_errors_total{kind}`. */
export type RequestErrorKind =
  | "unauthorized"
  | "not_found"
  | "method_not_allowed"
  | "unsupported_media_type"
  | "bad_request"
  | "busy"
  | "shutting_down"
  | "client_disconnected"
  | "body_error"
  | "upstream_refused"
  | "upstream_unavailable"
  | "write_error"
  | "internal_error";

/** A plain copy of {@linkcode RequestCounters}. */
export interface RequestSnapshot {
  /** Rephrase requests accepted (answered 200). */
  readonly total: number;
  /** Rephrase responses still streaming. */
  readonly active: number;
  readonly errors: Readonly<Partial<Record<RequestErrorKind, number>>>;
}

/**
 * HTTP-side counters of one server: rephrase requests accepted and active, errors by kind.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { RequestCounters } from "./server_metrics.ts";
 *
 * const counters = new RequestCounters();
 * counters.started();
 * counters.error("busy");
 * assert.deepEqual(counters.snapshot(), { total: 1, active: 1, errors: { busy: 1 } });
 * counters.ended();
 * assert.equal(counters.active, 0);
 * ```
 */
export class RequestCounters {
  #total = 0;
  #active = 0;
  readonly #errors = new Map<RequestErrorKind, number>();

  /** Rephrase responses still streaming. */
  get active(): number {
    return this.#active;
  }

  /** Counts a rephrase request accepted. */
  started(): void {
    this.#total += 1;
    this.#active += 1;
  }

  /** Counts the end of a request counted by {@linkcode RequestCounters.started}. */
  ended(): void {
    this.#active -= 1;
  }

  /** Counts one error. */
  error(kind: RequestErrorKind): void {
    this.#errors.set(kind, (this.#errors.get(kind) ?? 0) + 1);
  }

  /** A plain copy of the counters. */
  snapshot(): RequestSnapshot {
    return {
      total: this.#total,
      active: this.#active,
      errors: Object.fromEntries(this.#errors),
    };
  }
}

/** Everything `/metrics` shows, gathered at scrape time. */
export interface MetricsInput {
  readonly requests: RequestSnapshot;
  readonly usage: UsageSnapshot;
  /** USD spent so far; `null` without configured prices (the metric is then left out). */
  readonly cost: number | null;
  /** LLM calls running now, across all requests. */
  readonly callsInFlight: number;
  /** LLM calls waiting for a slot under `--concurrency`. */
  readonly callsWaiting: number;
  readonly upstream: UpstreamStatus;
}

interface Sample {
  readonly labels?: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge";
  readonly samples: readonly Sample[];
}

/**
 * Renders the metrics in the Prometheus text exposition format (version 0.0.4), every name
 * prefixed `cotfit_`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { RequestCounters, renderMetrics } from "./server_metrics.ts";
 * import { UsageMeter } from "./usage.ts";
 *
 * const meter = new UsageMeter(0);
 * meter.addRecord("written");
 * meter.addFailure('upstream "503"');
 * const text = renderMetrics({
 *   requests: new RequestCounters().snapshot(),
 *   usage: meter.snapshot(1_000),
 *   cost: null,
 *   callsInFlight: 2,
 *   callsWaiting: 0,
 *   upstream: { state: "unknown", lastSuccessMs: null, lastFailureMs: null },
 * });
 * assert.match(text, /^cotfit_records_total\{outcome="written"\} 1$/m);
 * assert.match(text, /^cotfit_llm_failures_total\{reason="upstream \\"503\\""\} 1$/m);
 * assert.match(text, /^# TYPE cotfit_llm_calls_in_flight gauge\ncotfit_llm_calls_in_flight 2$/m);
 * assert.ok(!text.includes("cotfit_cost_usd_total"));
 * ```
 *
 * @param input The counters to show.
 * @returns The exposition text, ending with a newline.
 */
export function renderMetrics(input: MetricsInput): string {
  const { requests, usage, upstream } = input;
  const families: Family[] = [
    counter("requests_total", "Rephrase requests accepted.", [{ value: requests.total }]),
    gauge("requests_active", "Rephrase responses streaming now.", [{ value: requests.active }]),
    counter(
      "request_errors_total",
      "Requests refused or ended early, by kind.",
      labelled("kind", requests.errors),
    ),
    counter("records_total", "Input lines by outcome.", [
      { labels: { outcome: "written" }, value: usage.written },
      { labels: { outcome: "rejected" }, value: usage.rejected },
      { labels: { outcome: "skipped" }, value: usage.skipped },
    ]),
    counter("llm_calls_total", "LLM calls that returned a reply.", [{ value: usage.calls }]),
    gauge("llm_calls_in_flight", "LLM calls running now.", [{ value: input.callsInFlight }]),
    gauge("llm_calls_waiting", "LLM calls waiting for a --concurrency slot.", [
      { value: input.callsWaiting },
    ]),
    counter("llm_retries_total", "LLM calls repeated after a failure.", [{ value: usage.retries }]),
    counter(
      "llm_failures_total",
      "Failed LLM attempts, by reason.",
      labelled("reason", usage.failures),
    ),
    counter("cache_hits_total", "Thoughts served from the cache.", [{ value: usage.cacheHits }]),
    counter("dedupe_hits_total", "Thoughts shared with an identical call in flight.", [
      { value: usage.dedupeHits },
    ]),
    counter("kept_thoughts_total", "Answers that already had a thought, kept without a call.", [
      { value: usage.keptThoughts },
    ]),
    counter("tokens_total", "LLM tokens, by direction.", [
      { labels: { direction: "input" }, value: usage.inputTokens },
      { labels: { direction: "output" }, value: usage.outputTokens },
    ]),
  ];
  if (input.cost !== null) {
    families.push(counter("cost_usd_total", "USD spent at the configured prices.", [
      { value: input.cost },
    ]));
  }
  families.push(gauge("upstream_up", "1 unless the latest upstream call failed.", [
    { value: upstream.state === "failing" ? 0 : 1 },
  ]));
  if (upstream.lastSuccessMs !== null) {
    families.push(gauge("upstream_last_success_seconds", "When a call last got a reply.", [
      { value: upstream.lastSuccessMs / 1000 },
    ]));
  }
  if (upstream.lastFailureMs !== null) {
    families.push(gauge("upstream_last_failure_seconds", "When a call last failed.", [
      { value: upstream.lastFailureMs / 1000 },
    ]));
  }
  return families.map(formatFamily).join("");
}

function counter(name: string, help: string, samples: readonly Sample[]): Family {
  return { name: `cotfit_${name}`, help, type: "counter", samples };
}

function gauge(name: string, help: string, samples: readonly Sample[]): Family {
  return { name: `cotfit_${name}`, help, type: "gauge", samples };
}

function labelled(label: string, counts: Readonly<Record<string, number | undefined>>): Sample[] {
  return Object.entries(counts).map(([key, value]) => ({
    labels: { [label]: key },
    value: value ?? 0,
  }));
}

function formatFamily(family: Family): string {
  let text = `# HELP ${family.name} ${family.help}\n# TYPE ${family.name} ${family.type}\n`;
  for (const sample of family.samples) {
    const labels = sample.labels === undefined ? "" : `{${
      Object.entries(sample.labels)
        .map(([key, value]) => `${key}="${escapeLabel(value)}"`)
        .join(",")
    }}`;
    text += `${family.name}${labels} ${sample.value}\n`;
  }
  return text;
}

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}
