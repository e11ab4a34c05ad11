/**
 * Turns one {@linkcode ThoughtRequest} into a validated thought: cache lookup, in-run dedupe,
 * LLM call under the shared limiter, extraction and validation, retries with backoff.
 *
 * @module
 */

import type { ThoughtCache } from "./cache.ts";
import { createCacheKeyer } from "./cache.ts";
import type { ChatClient, ChatReply } from "./llm.ts";
import { LlmError } from "./llm_error.ts";
import { retryDelay } from "./retry_delay.ts";
import type { Limiter } from "./pool.ts";
import { type PromptTemplate, renderMessages } from "./prompt.ts";
import type { Framing } from "./records.ts";
import { extractThought, framingLineIn, thoughtMayNeedTokenCount } from "./thought.ts";
import { loadTokenizer } from "./tokenizer.ts";
import type { ChatMessage, ThoughtRequest } from "./types.ts";

/** The outcome of one turn: a thought, or why there is none. */
export type ThoughtOutcome = { ok: true; thought: string } | { ok: false; reason: string };

/** One finished LLM call, for usage accounting and the debug log. */
export interface CallRecord {
  readonly line: number;
  /** The input file of the record (`WriteContext.source`). */
  readonly source?: string;
  readonly turnIndex: number;
  readonly attempt: number;
  readonly messages: readonly ChatMessage[];
  readonly reply: ChatReply | null;
  /** The extracted thought, or why the call did not give one. */
  readonly result: ThoughtOutcome;
  /** A short, stable name of the failure for counting (`upstream 503`, `refusal`...). */
  readonly failure: string | null;
}

/** Hooks the shells use to meter and log; all optional. */
export interface GenerationEvents {
  onCall?(call: CallRecord): void;
  onCacheHit?(): void;
  onDedupe?(): void;
  /** A call in flight was aborted (its record's file or client went away, a second ^C). */
  onAborted?(): void;
  /** A retry is due after `delayMs` (for notices); it may yet be cut off by a stop. */
  onRetry?(info: { reason: string; delayMs: number; attempt: number; transient: boolean }): void;
  /** A retry starts: the attempt after a failed one. */
  onRetryStart?(): void;
}

/** The run stops: the upstream refuses every call (wrong key, model or URL). */
export class UpstreamFatalError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
    this.name = "UpstreamFatalError";
  }
}

/** Everything {@linkcode createThoughtWriter} needs; I/O comes in through these fields. */
export interface ThoughtWriterOptions {
  template: PromptTemplate;
  /** Identifies the prompt file's content, part of the cache key. */
  promptId: string;
  client: ChatClient;
  model: string;
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  /** Further request fields (`--extra-body`), part of the cache key. */
  extraBody?: Readonly<Record<string, unknown>> | null;
  maxThoughtTokens?: number;
  /** Retries after a failed attempt (transient error or invalid thought). */
  retries: number;
  limiter: Limiter;
  cache: ThoughtCache;
  events?: GenerationEvents;
  /** Injected for tests. @default {setTimeout-based} */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Backoff base in milliseconds. @default {1000} */
  retryBaseMs?: number;
}

/** Per-call context: `line` tags debug-log entries, `signal` aborts waits and in-flight calls. */
export interface WriteContext {
  readonly line: number;
  /** The input file the record comes from, when there is one. */
  readonly source?: string;
  readonly signal?: AbortSignal;
  /**
   * The run is stopping (a first ^C, a server shutting down): a call that fails is not retried,
   * so the records already taken end soon even while the upstream is down.
   */
  readonly stopping?: AbortSignal;
  /**
   * The framing the thought will be written in: a thought holding one of its lines as a line of
   * its own is invalid (see {@linkcode framingLineIn}), a cached one is generated again.
   */
  readonly framing?: Framing;
}

/** Writes the thought for one turn. */
export type ThoughtWriter = (
  request: ThoughtRequest,
  context: WriteContext,
) => Promise<ThoughtOutcome>;

/**
 * Builds the per-run thought writer. It throws {@linkcode UpstreamFatalError} when the upstream
 * refuses the credentials or model, and the abort reason when aborted; every other failure is
 * returned as `{ ok: false, reason }`.
 *
 * @param options Template, client, cache, limiter and policies.
 * @returns The writer.
 */
export function createThoughtWriter(options: ThoughtWriterOptions): ThoughtWriter {
  const sleep = options.sleep ?? abortableSleep;
  const limit = { maxThoughtTokens: options.maxThoughtTokens };
  const inFlight = new Map<string, Running>();
  // Once the upstream refuses a call (401, 403...), the calls that share its signal (a CLI file,
  // a server request) and still wait for a slot are not sent: they would be refused too.
  const refusals = new WeakMap<AbortSignal, UpstreamFatalError>();
  const keyOf = createCacheKeyer({
    model: options.model,
    temperature: options.temperature,
    topP: options.topP,
    maxTokens: options.maxTokens,
    promptId: options.promptId,
    extraBody: options.extraBody,
  });

  async function attemptAll(
    messages: ChatMessage[],
    key: string,
    turnIndex: number,
    context: WriteContext,
    running: Running,
  ): Promise<ThoughtOutcome> {
    try {
      const { line, source, signal } = context;
      let lastReason = "no attempt made";
      for (let attempt = 0; attempt <= options.retries; attempt++) {
        signal?.throwIfAborted();
        if (attempt > 0) options.events?.onRetryStart?.();
        let reply: ChatReply | null = null;
        let result: ThoughtOutcome | null = null;
        let retryAfterMs: number | undefined;
        let transient = true;
        let sent = false;
        try {
          // Not `limiter.run(task)`: its two async functions would be kept for the call's whole
          // wait, and at concurrency 1,024 every scavenge copies what calls keep.
          const wait = options.limiter.acquire();
          if (wait) await wait;
          try {
            // Stopped while it waited for a slot: nothing was sent.
            signal?.throwIfAborted();
            const refused = signal && refusals.get(signal);
            if (refused) throw refused;
            sent = true;
            reply = await options.client.complete(messages, { signal });
            // Most replies are too short to break the limit: those never load the tokenizer.
            const tokenizer = thoughtMayNeedTokenCount(reply, limit)
              ? await loadTokenizer()
              : undefined;
            result = extractThought(reply, { ...limit, tokenizer });
            if (result.ok && context.framing && framingLineIn(result.thought, context.framing)) {
              result = { ok: false, reason: "thought holds a line of the framing" };
            }
            // Stored before the slot is freed: a crash re-pays at most the calls in flight.
            if (result.ok) await options.cache.put(key, result.thought);
          } finally {
            options.limiter.release();
          }
        } catch (error) {
          if (signal?.aborted || (error instanceof LlmError && error.kind === "aborted")) {
            // Cut off in flight: counted, as a provider may bill what it had generated.
            if (sent && reply === null) options.events?.onAborted?.();
            throw signal?.reason ?? error;
          }
          if (!(error instanceof LlmError)) throw error;
          const result: ThoughtOutcome = {
            ok: false,
            // A rejection without a status is cotfit's own (a reply over the cap): said as is.
            reason: error.kind === "transient"
              ? `upstream unavailable: ${error.message}`
              : error.status === undefined
              ? error.message
              : `upstream rejected the request: ${error.message}`,
          };
          const failure = error.status
            ? `upstream ${error.status}`
            : error.kind === "fatal"
            ? error.message.split(":")[0]
            : "upstream unreachable or bad reply";
          options.events?.onCall?.({
            line,
            source,
            turnIndex,
            attempt,
            messages,
            reply: null,
            result,
            failure,
          });
          // Counted and logged first: the call that stops the run is one of its failures.
          if (error.kind === "fatal") {
            const refusal = new UpstreamFatalError(error.message, error.status);
            if (signal && !refusals.has(signal)) refusals.set(signal, refusal);
            throw refusal;
          }
          if (error.kind === "rejected") return result;
          lastReason = result.reason;
          retryAfterMs = error.retryAfterMs;
        }
        if (reply && result) {
          const failure = result.ok ? null : result.reason.split(":")[0];
          options.events?.onCall?.({
            line,
            source,
            turnIndex,
            attempt,
            messages,
            reply,
            result,
            failure,
          });
          if (result.ok) return result;
          lastReason = `no valid thought: ${result.reason}`;
          transient = false;
        }
        if (attempt === options.retries) break;
        const { stopping } = context;
        if (stopping?.aborted) return notRetried(lastReason);
        const delayMs = transient
          ? retryDelay(attempt + 1, { retryAfterMs, baseMs: options.retryBaseMs ?? 1000 })
          : 0;
        options.events?.onRetry?.({ reason: lastReason, delayMs, attempt: attempt + 1, transient });
        if (delayMs > 0) {
          try {
            await sleep(delayMs, stopping ? anySignal(signal, stopping) : signal);
          } catch (error) {
            if (signal?.aborted || !stopping?.aborted) throw error;
          }
          if (stopping?.aborted) return notRetried(lastReason);
        }
      }
      const tries = options.retries + 1;
      return {
        ok: false,
        reason: `${lastReason} (after ${tries} attempt${tries === 1 ? "" : "s"})`,
      };
    } finally {
      // A later asker may have started its own after this one failed: that one stays.
      if (inFlight.get(key) === running) inFlight.delete(key);
    }
  }

  // Not async: every async function a call awaits through is kept alive for the call's whole wait,
  // and at concurrency 1,024 every scavenge copies what the calls in flight keep.
  return function writeThought(request, context) {
    let messages: ChatMessage[];
    let key: string;
    let cached: string | undefined;
    try {
      messages = renderMessages(options.template, request);
      key = keyOf(messages);
      cached = options.cache.get(key);
    } catch (error) {
      return Promise.reject(error);
    }
    // A thought cached for another framing may hold one of this framing's lines.
    if (cached !== undefined && !(context.framing && framingLineIn(cached, context.framing))) {
      options.events?.onCacheHit?.();
      return Promise.resolve({ ok: true, thought: cached });
    }
    const running = inFlight.get(key);
    if (running) return shareRunning(running, messages, key, request.turnIndex, context);
    return start(messages, key, request.turnIndex, context);
  };

  function start(
    messages: ChatMessage[],
    key: string,
    turnIndex: number,
    context: WriteContext,
  ): Promise<ThoughtOutcome> {
    const running: Running = { work: null };
    // Registered first: attemptAll may settle before it returns (an aborted signal).
    inFlight.set(key, running);
    return running.work = attemptAll(messages, key, turnIndex, context, running);
  }

  async function shareRunning(
    running: Running,
    messages: ChatMessage[],
    key: string,
    turnIndex: number,
    context: WriteContext,
  ): Promise<ThoughtOutcome> {
    options.events?.onDedupe?.();
    try {
      const shared = await running.work!;
      // Its first asker may have had another framing (server requests set their own).
      const fits = !shared.ok || !context.framing ||
        !framingLineIn(shared.thought, context.framing);
      if (fits) return shared;
    } catch (error) {
      // The first asker went away (a server client disconnected); this one still wants it.
      if (context.signal?.aborted || error instanceof UpstreamFatalError) throw error;
    }
    return await start(messages, key, turnIndex, context);
  }
}

/** A turn given up on because the run stopped while it waited to retry. */
function notRetried(lastReason: string): ThoughtOutcome {
  return { ok: false, reason: `${lastReason} (not retried: the run is stopping)` };
}

function anySignal(signal: AbortSignal | undefined, stopping: AbortSignal): AbortSignal {
  return signal ? AbortSignal.any([signal, stopping]) : stopping;
}

/** An identical request being generated, shared by the turns that ask for it meanwhile. */
interface Running {
  work: Promise<ThoughtOutcome> | null;
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    function onAbort() {
      clearTimeout(timer);
      reject(signal!.reason);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
