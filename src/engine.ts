/**
 * Builds the generation engine both shells share from resolved options: prompt, LLM client,
 * cache, call limiter, usage meter, and the thought writer wired to them.
 *
 * Requires `--allow-read` (prompt file), `--allow-write` (cache, debug log) and `--allow-net`.
 *
 * @module
 */

import { memoryCache, openCache, type ThoughtCache } from "./cache.ts";
import type { Options } from "./config.ts";
import { type CallRecord, createThoughtWriter, type ThoughtWriter } from "./generate.ts";
import { createChatClient } from "./llm.ts";
import { createLimiter, type Limiter } from "./pool.ts";
import { loadPrompt, type PromptTemplate } from "./prompt.ts";
import type { TextSink } from "./sink.ts";
import { loadedTokenizer, loadTokenizer, type Tokenizer } from "./tokenizer.ts";
import type { TokenUsage } from "./types.ts";
import { countMessageTokens, UsageMeter } from "./usage.ts";

/** What the shells get back from {@linkcode createEngine}. */
export interface Engine {
  readonly writeThought: ThoughtWriter;
  readonly template: PromptTemplate;
  /** Versions the validation rules inside cache keys. */
  readonly promptId: string;
  readonly meter: UsageMeter;
  /** Bounds LLM calls in flight across everything this engine serves. */
  readonly limiter: Limiter;
  readonly cache: ThoughtCache;
  /**
   * Finishes the token counts still waiting for the tokenizer (so the meter is complete),
   * flushes the debug log and closes the cache.
   */
  close(): Promise<void>;
}

/** I/O the engine reports to; all optional. */
export interface EngineHooks {
  /** Where the persistent cache lives; `null` for an in-memory one (dedupe only). */
  cachePath: string | null;
  /** One JSON line per LLM call. */
  debugLog?: TextSink | null;
  /** A human message worth showing (e.g. the upstream is down and cotfit is waiting). */
  notice?: (text: string) => void;
  /** Milliseconds on the clock the meter uses. */
  now: () => number;
}

/** Retry waits at least this long before a notice is shown; shorter ones are routine. */
const NOTICE_DELAY_MS = 2000;

/**
 * Creates the engine for one run (CLI) or one server.
 *
 * @param options Resolved options.
 * @param hooks Cache location, debug log, notices and clock.
 * @returns The engine; call `close()` when done.
 * @throws {PromptError} When the prompt file is invalid.
 */
export async function createEngine(options: Options, hooks: EngineHooks): Promise<Engine> {
  const template = await loadPrompt(options.promptPath ?? undefined);
  const cache = hooks.cachePath === null ? memoryCache() : openCache(hooks.cachePath);
  const meter = new UsageMeter(hooks.now());
  const limiter = createLimiter(options.concurrency);
  const { debugLog, notice } = hooks;
  // The log is written from a sync hook; its first failure surfaces when the engine closes.
  let debugLogError: { error: unknown } | null = null;
  // Calls without usage whose count waits for the tokenizer; close() waits for them.
  const pendingCounts = new Set<Promise<void>>();
  let countError: { error: unknown } | null = null;
  // The rendered messages carry the prompt itself; this versions the validation rules.
  const promptId = `thought-v1;max=${options.maxThoughtTokens}`;

  const client = createChatClient({
    baseURL: options.baseURL,
    // Local servers (vLLM, llama.cpp) need no key, but the SDK insists on one.
    apiKey: options.apiKey ?? "not-needed",
    model: options.model,
    temperature: options.temperature,
    topP: options.topP ?? undefined,
    maxTokens: options.maxTokens,
    extraBody: options.extraBody,
    timeoutMs: options.timeoutMs,
    transport: options.transport,
    onAdapt: notice,
  });
  const writeThought = createThoughtWriter({
    template,
    promptId,
    client,
    model: options.model,
    temperature: options.temperature,
    topP: options.topP ?? undefined,
    maxTokens: options.maxTokens,
    extraBody: options.extraBody,
    maxThoughtTokens: options.maxThoughtTokens,
    retries: options.retries,
    retryBaseMs: options.retryBaseMs,
    limiter,
    cache,
    events: {
      onCall(call) {
        if (call.reply && call.reply.usage === null) {
          // The server sent no usage: count it, which needs the tokenizer, loaded on first need.
          const tokenizer = loadedTokenizer();
          if (tokenizer) record(call, estimateUsage(call, tokenizer));
          else {
            const counting: Promise<void> = loadTokenizer()
              .then((tokenizer) => record(call, estimateUsage(call, tokenizer)))
              .catch((error) => {
                countError ??= { error };
              })
              .finally(() => pendingCounts.delete(counting));
            pendingCounts.add(counting);
          }
        } else record(call, call.reply?.usage ?? null);
      },
      // Without a cache file the memory cache only holds this run's own thoughts: a hit is a
      // duplicate, as a dry run counts it.
      onCacheHit: hooks.cachePath === null ? () => meter.addDedupeHit() : () => meter.addCacheHit(),
      onDedupe: () => meter.addDedupeHit(),
      onAborted: () => meter.addAbortedCall(),
      onRetryStart: () => meter.addRetry(),
      onRetry(info) {
        if (notice && info.transient && info.delayMs >= NOTICE_DELAY_MS) {
          notice(
            `${info.reason}; retrying in ${Math.round(info.delayMs / 1000)} s ` +
              `(attempt ${info.attempt + 1} of ${options.retries + 1})`,
          );
        }
      },
    },
  });

  function record(call: CallRecord, usage: TokenUsage | null): void {
    if (usage) meter.addCall(usage);
    if (call.failure) meter.addFailure(call.failure);
    debugLog?.write(
      JSON.stringify({
        file: call.source ?? null,
        line: call.line,
        turn: call.turnIndex + 1,
        attempt: call.attempt + 1,
        messages: call.messages,
        reply: call.reply?.content ?? null,
        finish_reason: call.reply?.finishReason ?? null,
        ...(call.result.ok ? { thought: call.result.thought } : { rejected: call.result.reason }),
        usage,
        latency_ms: call.reply?.latencyMs ?? null,
      }) + "\n",
    )?.catch((error) => debugLogError ??= { error });
  }

  return {
    writeThought,
    template,
    promptId,
    meter,
    limiter,
    cache,
    async close() {
      try {
        // Calls cut off in flight settle a moment after their abort: counted once they have.
        const deadline = performance.now() + CLOSE_SETTLE_MS;
        while (limiter.active > 0 && performance.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        while (pendingCounts.size > 0) await Promise.all(pendingCounts);
        await debugLog?.commit();
        const failure = countError ?? debugLogError;
        if (failure) throw failure.error;
      } finally {
        client.close();
        cache.close();
      }
    },
  };
}

/** How long closing waits for aborted calls to settle, so they are counted. */
const CLOSE_SETTLE_MS = 2000;

/** The usage of a call the server sent none for, counted with the o200k tokenizer. */
function estimateUsage(call: CallRecord, tokenizer: Tokenizer): TokenUsage {
  return {
    inputTokens: countMessageTokens(call.messages, tokenizer.countTokens),
    outputTokens: tokenizer.countTokens(call.reply?.content ?? ""),
    estimated: true,
  };
}
