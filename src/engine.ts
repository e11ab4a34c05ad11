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
import { createThoughtWriter, type ThoughtWriter } from "./generate.ts";
import { createChatClient } from "./llm.ts";
import { createLimiter, type Limiter } from "./pool.ts";
import { loadPrompt, type PromptTemplate } from "./prompt.ts";
import type { TextSink } from "./sink.ts";
import type { TokenUsage } from "./types.ts";
import { countMessageTokens, countTokens, UsageMeter } from "./usage.ts";

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
  /** Flushes the debug log and closes the cache. */
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
  // The rendered messages carry the prompt itself; this versions the validation rules.
  const promptId = `thought-v1;max=${options.maxThoughtTokens}`;

  const writeThought = createThoughtWriter({
    template,
    promptId,
    client: createChatClient({
      baseURL: options.baseURL,
      // Local servers (vLLM, llama.cpp) need no key, but the SDK insists on one.
      apiKey: options.apiKey ?? "not-needed",
      model: options.model,
      temperature: options.temperature,
      topP: options.topP ?? undefined,
      maxTokens: options.maxTokens,
      timeoutMs: options.timeoutMs,
    }),
    model: options.model,
    temperature: options.temperature,
    topP: options.topP ?? undefined,
    maxTokens: options.maxTokens,
    maxThoughtTokens: options.maxThoughtTokens,
    retries: options.retries,
    retryBaseMs: options.retryBaseMs,
    limiter,
    cache,
    events: {
      onCall(call) {
        let usage: TokenUsage | null = call.reply?.usage ?? null;
        if (call.reply && usage === null) {
          usage = {
            inputTokens: countMessageTokens(call.messages),
            outputTokens: countTokens(call.reply.content ?? ""),
            estimated: true,
          };
        }
        if (usage) meter.addCall(usage);
        if (call.failure) meter.addFailure(call.failure);
        debugLog?.write(
          JSON.stringify({
            line: call.line,
            turn: call.turnIndex + 1,
            attempt: call.attempt + 1,
            messages: call.messages,
            reply: call.reply?.content ?? null,
            finish_reason: call.reply?.finishReason ?? null,
            ...(call.result.ok
              ? { thought: call.result.thought }
              : { rejected: call.result.reason }),
            usage,
            latency_ms: call.reply?.latencyMs ?? null,
          }) + "\n",
        )?.catch((error) => debugLogError ??= { error });
      },
      onCacheHit: () => meter.addCacheHit(),
      onDedupe: () => meter.addDedupeHit(),
      onRetry(info) {
        meter.addRetry();
        if (notice && info.transient && info.delayMs >= NOTICE_DELAY_MS) {
          notice(
            `${info.reason}; retrying in ${Math.round(info.delayMs / 1000)} s ` +
              `(attempt ${info.attempt + 1} of ${options.retries + 1})`,
          );
        }
      },
    },
  });

  return {
    writeThought,
    template,
    promptId,
    meter,
    limiter,
    cache,
    async close() {
      try {
        await debugLog?.commit();
        if (debugLogError) throw debugLogError.error;
      } finally {
        cache.close();
      }
    },
  };
}
