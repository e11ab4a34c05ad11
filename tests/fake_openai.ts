#!/usr/bin/env -S deno run --allow-net=127.0.0.1
/**
 * A fault-injecting fake OpenAI endpoint for tests, benches and the chaos suite, built on the
 * offline endpoint. Faults are drawn per request from a seeded PRNG, so the n-th request gets
 * the same fault for the same seed whatever the timing.
 *
 * Run as a script for benches in their own process:
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 tests/fake_openai.ts --port 0 --latency 200 --seed 1 --fault-rate 0.2
 * ```
 *
 * It prints `listening http://127.0.0.1:PORT/v1` on stdout, serves until SIGTERM or SIGINT, then
 * prints its stats as one JSON line. `--fault-rate` spreads evenly over every fault except
 * `unauthorized`.
 *
 * Permissions: `--allow-net` for the address it binds.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type ChatRequestBody,
  completionResponse,
  errorResponse,
  startOfflineLlm,
} from "../src/offline_llm.ts";
import { offlineThought } from "../src/offline_thought.ts";

/** Every fault the fake can inject. */
export const FAULT_KINDS = [
  "rate_limit",
  "server_error",
  "unavailable",
  "reset",
  "hang",
  "invalid_json",
  "no_tags",
  "runaway",
  "empty",
  "refusal",
  "unauthorized",
] as const;

/**
 * One injected failure:
 * - `rate_limit`: 429 with `retry-after: 1`;
 * - `server_error`: 500; `unavailable`: 503;
 * - `reset`: 200 headers and half a JSON body, then the connection is cut;
 * - `hang`: 200 headers, then nothing until the client aborts (or the fake closes);
 * - `invalid_json`: 200 whose JSON-typed body is an HTML error page;
 * - `no_tags`: a thought without its `<thought_process>` tags;
 * - `runaway`: an unclosed, repeating thought with `finish_reason: "length"`;
 * - `empty`: empty content; `refusal`: the model declines;
 * - `unauthorized`: 401 whose message echoes the bearer token back, as careless servers do.
 */
export type FaultKind = typeof FAULT_KINDS[number];

/** Options of {@linkcode startFakeOpenAI}. */
export interface FakeOptions {
  /**
   * Delay before each reply, cut short when the client aborts.
   * @default {0}
   */
  latencyMs?: number;
  /**
   * Seed of the fault draw.
   * @default {0}
   */
  seed?: number;
  /**
   * Probability of each fault per request; their sum must not exceed 1.
   * @default {{}} no random faults
   */
  faults?: Partial<Record<FaultKind, number>>;
  /**
   * Picks the fault of request `n` (1-based); `undefined` falls back to the random draw.
   * @default {undefined}
   */
  script?: (n: number, body: ChatRequestBody) => FaultKind | undefined;
  /**
   * Keep every request body in {@linkcode FakeOpenAI.bodies}.
   * @default {false}
   */
  recordBodies?: boolean;
  /**
   * Port to bind; 0 picks a free one.
   * @default {0}
   */
  /**
   * `false`: cheaper replies that do not notice a client leaving (`OfflineLlmOptions`).
   * @default {true}
   */
  trackDisconnects?: boolean;
  port?: number;
}

/** Live counters of the fake. */
export interface FakeStats {
  /** Chat requests received. */
  readonly requests: number;
  /** Chat requests being handled now. */
  readonly inFlight: number;
  /** Highest `inFlight` seen. */
  readonly maxInFlight: number;
  /** Chat requests whose client went away before the reply. */
  readonly aborted: number;
  /** Faults injected, by kind. */
  readonly faults: Readonly<Record<FaultKind, number>>;
  /** Requests answered 503 while {@linkcode FakeOpenAI.setDown} was on. */
  readonly outage: number;
}

/** A running fake endpoint. */
export interface FakeOpenAI extends AsyncDisposable {
  /** Base URL ending in `/v1`. */
  readonly url: string;
  /** Counters, updated live. */
  readonly stats: FakeStats;
  /** Request bodies in arrival order, when `recordBodies` is on. */
  readonly bodies: readonly ChatRequestBody[];
  /**
   * Simulates an outage: while down, every chat request gets a 503 (what a load balancer in
   * front of a dead upstream sends; the listener stays up so the same URL comes back).
   */
  setDown(down: boolean): void;
  /** Ends pending replies (hangs included) and stops listening. */
  close(): Promise<void>;
}

/**
 * Starts a fake OpenAI endpoint on 127.0.0.1 that injects faults.
 *
 * @param options Latency, seed, fault probabilities or a per-request script.
 * @returns The running fake; close it (or `await using` it) when done.
 * @throws {RangeError} when a probability is outside [0, 1] or they sum above 1.
 *
 * @example Scripted faults
 * ```ts
 * import assert from "node:assert/strict";
 * import { startFakeOpenAI } from "./fake_openai.ts";
 *
 * await using fake = await startFakeOpenAI({ script: (n) => n === 1 ? "rate_limit" : undefined });
 * const post = () =>
 *   fetch(`${fake.url}/chat/completions`, {
 *     method: "POST",
 *     body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "Hi?" }] }),
 *   });
 * const first = await post();
 * await first.body?.cancel();
 * assert.equal(first.status, 429);
 * assert.equal(first.headers.get("retry-after"), "1");
 * assert.equal((await (await post()).json()).choices[0].finish_reason, "stop");
 * assert.equal(fake.stats.faults.rate_limit, 1);
 * ```
 */
export async function startFakeOpenAI(options: FakeOptions = {}): Promise<FakeOpenAI> {
  const { latencyMs = 0, seed = 0, script, recordBodies = false, port = 0 } = options;
  const table = faultTable(options.faults ?? {});
  const faults = {} as Record<FaultKind, number>;
  for (const kind of FAULT_KINDS) faults[kind] = 0;
  const bodies: ChatRequestBody[] = [];
  let down = false;
  let outage = 0;

  const offline = await startOfflineLlm({
    port,
    latencyMs,
    trackDisconnects: options.trackDisconnects,
    respond(body, n, signal, headers) {
      if (recordBodies) bodies.push(body);
      if (down) {
        outage++;
        return errorResponse(503, "The upstream is down (simulated outage)", "server_error");
      }
      const fault = script?.(n, body) ?? drawFault(table, seed, n);
      if (fault === undefined) return undefined;
      faults[fault]++;
      return faultResponse(fault, body, n, signal, headers);
    },
  });

  const stats: FakeStats = {
    get requests() {
      return offline.stats.requests;
    },
    get inFlight() {
      return offline.stats.inFlight;
    },
    get maxInFlight() {
      return offline.stats.maxInFlight;
    },
    get aborted() {
      return offline.stats.aborted;
    },
    faults,
    get outage() {
      return outage;
    },
  };
  return {
    url: offline.url,
    stats,
    bodies,
    setDown(value: boolean) {
      down = value;
    },
    close: offline.close,
    [Symbol.asyncDispose]: offline.close,
  };
}

/**
 * Builds the fault table for `--fault-rate`: `rate` spread evenly over every fault except
 * `unauthorized`, which would stop a run rather than test its resilience.
 *
 * @param rate Total probability that a request gets a fault, in [0, 1].
 * @returns Per-fault probabilities for {@linkcode FakeOptions.faults}.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { evenFaults } from "./fake_openai.ts";
 *
 * const faults = evenFaults(0.2);
 * assert.equal(faults.unauthorized, undefined);
 * assert.equal(faults.reset, 0.02);
 * ```
 */
export function evenFaults(rate: number): Partial<Record<FaultKind, number>> {
  const kinds = FAULT_KINDS.filter((kind) => kind !== "unauthorized");
  return Object.fromEntries(kinds.map((kind) => [kind, rate / kinds.length]));
}

type FaultTable = readonly (readonly [FaultKind, number])[];

function faultTable(faults: Partial<Record<FaultKind, number>>): FaultTable {
  const table: [FaultKind, number][] = [];
  let total = 0;
  // FAULT_KINDS order, not the caller's key order, keeps the draw stable.
  for (const kind of FAULT_KINDS) {
    const probability = faults[kind] ?? 0;
    if (!(probability >= 0 && probability <= 1)) {
      throw new RangeError(
        `Cannot use fault "${kind}": probability must be in [0, 1], got ${probability}`,
      );
    }
    if (probability > 0) table.push([kind, probability]);
    total += probability;
  }
  if (total > 1 + 1e-9) {
    throw new RangeError(`Cannot use faults: probabilities sum to ${total}, more than 1`);
  }
  return table;
}

/** The fault of request `n`: a function of `seed` and `n` only, never of arrival timing. */
function drawFault(table: FaultTable, seed: number, n: number): FaultKind | undefined {
  if (table.length === 0) return undefined;
  let draw = mulberry32(Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) ^ n);
  for (const [kind, probability] of table) {
    draw -= probability;
    if (draw < 0) return kind;
  }
  return undefined;
}

/** First output in [0, 1) of mulberry32 seeded with `state`. */
function mulberry32(state: number): number {
  let t = (state + 0x6d2b79f5) | 0;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const encoder = new TextEncoder();

function faultResponse(
  fault: FaultKind,
  body: ChatRequestBody,
  n: number,
  signal: AbortSignal,
  headers: Headers,
): Response {
  const model = body.model;
  switch (fault) {
    case "rate_limit":
      return errorResponse(429, "Rate limit reached for requests", "rate_limit_error", {
        "retry-after": "1",
      });
    case "server_error":
      return errorResponse(500, "The server had an error processing your request", "server_error");
    case "unavailable":
      return errorResponse(503, "The engine is currently overloaded", "server_error");
    case "reset":
      return cutResponse(`{"id":"chatcmpl-fake-${n}","object":"chat.completion","choices":[{"ind`);
    case "hang":
      return stalledResponse(signal);
    case "invalid_json":
      return new Response("<html><body><h1>502 Bad Gateway</h1></body></html>", {
        headers: { "content-type": "application/json" },
      });
    case "no_tags":
      return completionResponse({ model, n, content: untagged(thoughtFor(body)) });
    case "runaway":
      return completionResponse({
        model,
        n,
        content: `<thought_process>\n${"I need to think about this more carefully. ".repeat(60)}`,
        finishReason: "length",
      });
    case "empty":
      return completionResponse({ model, n, content: "" });
    case "refusal":
      return completionResponse({ model, n, content: "I'm sorry, but I can't help with that." });
    case "unauthorized": {
      const token = headers.get("authorization")?.replace(/^Bearer\s+/i, "") ?? "";
      return errorResponse(
        401,
        `Incorrect API key provided: ${token}. Header was: Authorization: Bearer ${token}`,
        "invalid_request_error",
      );
    }
  }
}

/**
 * Headers and part of the body, then the end of the stream while `content-length` promises
 * more: the client sees the connection drop mid-body, and the server logs nothing.
 */
function cutResponse(partial: string): Response {
  const bytes = encoder.encode(partial);
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
  return new Response(stream, {
    headers: { "content-type": "application/json", "content-length": String(bytes.length * 4) },
  });
}

/**
 * 200 headers, then a body that never comes: a stuck generation. The wait sits in the body
 * because that is where Deno notices a client that leaves; the fake closing ends it too.
 */
function stalledResponse(signal: AbortSignal): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      if (signal.aborted) controller.close();
      else signal.addEventListener("abort", () => controller.close(), { once: true });
    },
  });
  return new Response(body, { headers: { "content-type": "application/json" } });
}

function thoughtFor(body: ChatRequestBody): string {
  const user = body.messages.findLast((message) => message.role === "user");
  return offlineThought(user?.content ?? "");
}

function untagged(thought: string): string {
  return thought.replace("<thought_process>\n", "").replace("\n</thought_process>", "");
}

const USAGE = `Usage: deno run --allow-net=127.0.0.1 tests/fake_openai.ts [OPTIONS]

Examples:
  deno run --allow-net=127.0.0.1 tests/fake_openai.ts --latency 200 --seed 1 --fault-rate 0.2

Options:
  --port N          port on 127.0.0.1, 0 for a free one (default 0)
  --latency MS      delay before each reply (default 0)
  --seed N          seed of the fault draw (default 0)
  --fault-rate P    probability of a fault per request, spread over all faults
                    except unauthorized (default 0)
  --lean            cheaper replies that do not notice a client leaving (benchmarks)
  -h, --help        show this help
`;

interface ScriptFlags {
  port: number;
  latencyMs: number;
  seed: number;
  faultRate: number;
  lean: boolean;
}

function parseFlags(args: string[]): ScriptFlags | "help" {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      port: { type: "string", default: "0" },
      latency: { type: "string", default: "0" },
      seed: { type: "string", default: "0" },
      "fault-rate": { type: "string", default: "0" },
      lean: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  return {
    port: numberFlag("port", values.port, 0, 65_535),
    latencyMs: numberFlag("latency", values.latency, 0, Number.MAX_SAFE_INTEGER),
    seed: numberFlag("seed", values.seed, -(2 ** 31), 2 ** 32),
    faultRate: numberFlag("fault-rate", values["fault-rate"], 0, 1),
    lean: values.lean,
  };
}

function numberFlag(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (text.trim() === "" || !(value >= min && value <= max)) {
    throw new RangeError(`Cannot parse --${name} "${text}": expected a number in [${min}, ${max}]`);
  }
  return value;
}

/**
 * Runs the fake as a process: listens, prints its URL, serves until SIGTERM or SIGINT, then
 * prints its stats as JSON.
 *
 * @param args Command-line arguments.
 * @returns The exit code.
 */
export async function main(args: string[]): Promise<number> {
  let flags: ScriptFlags | "help";
  try {
    flags = parseFlags(args);
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  if (flags === "help") {
    console.log(USAGE);
    return 0;
  }
  const fake = await startFakeOpenAI({
    port: flags.port,
    latencyMs: flags.latencyMs,
    seed: flags.seed,
    faults: evenFaults(flags.faultRate),
    trackDisconnects: !flags.lean,
  });
  console.log(`listening ${fake.url}`);
  const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();
  const onSignal = () => stop();
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  await stopped;
  Deno.removeSignalListener("SIGTERM", onSignal);
  Deno.removeSignalListener("SIGINT", onSignal);
  await fake.close();
  console.log(JSON.stringify(fake.stats));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
