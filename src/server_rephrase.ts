/**
 * One `POST /v1/rephrase` exchange as streams: request body bytes in, NDJSON bytes out, through
 * the shared pipeline. Adds what a network client needs: a per-request cap on LLM calls, abort
 * when the client goes away or the upstream fails, and a final fatal error line whenever the
 * output ends early, so a client never hangs or mistakes a cut stream for a complete one.
 *
 * @module
 */

import type { ContentCoding } from "./decompress.ts";
import type { Engine } from "./engine.ts";
import { type ThoughtWriter, UpstreamFatalError } from "./generate.ts";
import { rephraseStream } from "./pipeline.ts";
import { createLimiter, whileQueueShort } from "./pool.ts";
import type { Framing } from "./records.ts";
import type { UpstreamHealth } from "./server_health.ts";
import type { RequestErrorKind } from "./server_metrics.ts";
import { loadTokenizer } from "./tokenizer.ts";
import type { Outcome } from "./types.ts";
import { WriteError } from "./write_error.ts";

/** Options of {@linkcode rephraseBody}. */
export interface RephraseOptions {
  /** The server's engine, shared by all requests (cache, dedupe, global call cap, meter). */
  engine: Pick<Engine, "writeThought" | "meter">;
  framing: Framing;
  /**
   * LLM calls this request may have in flight (waiting ones included).
   *
   * @default {16}
   */
  requestConcurrency?: number;
  /**
   * Drop the error lines of rejected records.
   *
   * @default {false}
   */
  omitRejects?: boolean;
  /**
   * Records in progress or waiting for an earlier one; bounds this request's memory.
   *
   * @default {max(16, 2 * requestConcurrency)}
   */
  window?: number;
  /** @default {3000} */
  historyTokens?: number;
  /** @default {16 MiB} */
  maxLineBytes?: number;
  /**
   * The body's `Content-Encoding`; `"sniff"` tells gzip and UTF-16 by their first bytes.
   *
   * @default {"sniff"}
   */
  coding?: ContentCoding | "sniff";
  /** Graceful shutdown: stop reading a body still arriving; the records read so far finish. */
  stop?: AbortSignal;
  /** Forced shutdown: abort this request's LLM calls and end its output. */
  halt?: AbortSignal;
  /** Told about every finished turn and every refusal. */
  health?: UpstreamHealth;
  /** Called once when the output is over: `null` when complete, else why it ended early. */
  onEnd?: (kind: RequestErrorKind | null) => void;
  /** Told about errors that are bugs, not the client's or the upstream's doing. */
  onInternalError?: (error: unknown) => void;
  /** Told when the request ends because a file the server writes (its cache) failed. */
  onWriteError?: (error: WriteError) => void;
}

/** How {@linkcode RephraseOptions.requestConcurrency} defaults. */
const DEFAULT_REQUEST_CONCURRENCY = 16;

/** generate.ts's reason for a transient upstream failure that outlasted every retry. */
const UNAVAILABLE = "upstream unavailable";

const encoder = new TextEncoder();

interface Ending {
  readonly kind: RequestErrorKind;
  /** The fatal error line's message; `null` when nobody is left to read it. */
  readonly message: string | null;
}

/**
 * Rephrases a JSONL byte stream into an NDJSON byte stream: one line per non-blank input line,
 * in input order, the rewritten record or `{"error": {"line": N, "message": "..."}}`.
 *
 * The body is read only as fast as the output is read and the call window frees up, and
 * cancelling the output (the client went away) aborts this request's LLM calls. When the output
 * ends early it ends with `{"error": {"message": "...", "fatal": true}}`: the upstream refused
 * the key or model (`upstream refused: ...`), stayed down through every retry with no other call
 * answered meanwhile (`upstream unavailable: ...`; one record failing while others are answered
 * gets its own error line), the body could not be read, its compressed or UTF-16 data broke
 * off (that line also has the `line` where reading stopped, and comes with `rejects=omit` too),
 * the cache file could not be written (`Cannot write cache ...`), or the server is shutting down.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { rephraseBody } from "./server_rephrase.ts";
 * import { UsageMeter } from "./usage.ts";
 *
 * const engine = {
 *   meter: new UsageMeter(0),
 *   writeThought: () => Promise.resolve({ ok: true as const, thought: "Easy." }),
 * };
 * const body = new TextEncoder().encode(
 *   '{"messages":[{"role":"user","content":"1+1?"},{"role":"assistant","content":"2"}]}\nnope\n',
 * );
 * const out = rephraseBody(ReadableStream.from([body]), {
 *   engine,
 *   framing: { preface: "Thought:", suffix: "Answer:" },
 * });
 * const [record, error] = (await new Response(out).text()).trim().split("\n").map((line) =>
 *   JSON.parse(line)
 * );
 * assert.equal(record.messages[1].content, "Thought:\nEasy.\nAnswer:\n2");
 * assert.equal(error.error.line, 2);
 * ```
 *
 * @param body The request body; `null` reads as empty.
 * @param options The engine, framing, limits and shutdown signals.
 * @returns The response body.
 */
export function rephraseBody(
  body: ReadableStream<Uint8Array> | null,
  options: RephraseOptions,
): ReadableStream<Uint8Array> {
  const { engine, health, omitRejects = false } = options;
  const { meter } = engine;
  const requestConcurrency = options.requestConcurrency ?? DEFAULT_REQUEST_CONCURRENCY;
  const abort = new AbortController();
  const stopReading = new AbortController();
  const limiter = createLimiter(requestConcurrency);
  let ending: Ending | null = null;
  let bodyRead = false;
  let lastLine = 0;
  let finished = false;

  const writeThought: ThoughtWriter = (request, context) =>
    limiter.run(async () => {
      // A call that waited for a slot while the request ended must not start.
      context.signal?.throwIfAborted();
      const callsBefore = meter.calls;
      try {
        const result = await engine.writeThought(request, context);
        // While this turn kept failing, other calls were answered: the upstream is up, and the
        // failure is this record's (an input that crashes the model), so only its line says so.
        if (!result.ok && result.reason.startsWith(UNAVAILABLE) && meter.calls === callsBefore) {
          end("upstream_unavailable", `${result.reason}, at line ${context.line}; try again later`);
          throw abort.signal.reason;
        }
        return result;
      } catch (error) {
        if (error instanceof UpstreamFatalError) {
          health?.failed();
          end("upstream_refused", `upstream refused: ${error.message}`);
        } else if (error instanceof WriteError && ending === null) {
          // A full disk is the server's problem, not the client's: said, never a stack trace.
          options.onWriteError?.(error);
          end("write_error", error.message);
        }
        throw error;
      } finally {
        health?.observe(meter.snapshot(performance.now()));
      }
    });

  const pipeline = rephraseStream({
    framing: options.framing,
    writeThought,
    window: options.window ?? Math.max(16, requestConcurrency * 2),
    admit: whileQueueShort(limiter, requestConcurrency),
    historyTokens: options.historyTokens,
    loadTokenizer,
    maxLineBytes: options.maxLineBytes,
    // A JSON array (or pretty-printed objects) is read too, element by element as it arrives.
    format: "auto",
    coding: options.coding,
    signal: abort.signal,
    stop: stopReading.signal,
    // Not `stopReading`, which a shutdown leaves alone once the whole body is read.
    stopping: options.stop,
    onBlank: () => meter.addRecord("skipped"),
    onKeptThought: () => meter.addKeptThought(),
  });
  const reader = pipeline.readable.getReader();

  function end(kind: RequestErrorKind, message: string | null): void {
    if (ending !== null) return;
    ending = { kind, message };
    const reason = new DOMException(message ?? "the client went away", "AbortError");
    abort.abort(reason);
    // Also resolves a pending read, so the output ends now rather than when the pipeline drains.
    reader.cancel(reason).catch(() => {});
  }

  // Once the whole body is in the pipeline a shutdown lets it finish; until then it cuts it.
  const onStop = () => {
    if (!bodyRead) stopReading.abort();
  };
  const onHalt = () => end("shutting_down", "server is shutting down");
  options.stop?.addEventListener("abort", onStop, { once: true });
  options.halt?.addEventListener("abort", onHalt, { once: true });
  if (options.stop?.aborted) onStop();
  if (options.halt?.aborted) onHalt();

  (body ?? ReadableStream.from<Uint8Array>([]))
    .pipeTo(pipeline.writable, { signal: stopReading.signal, preventAbort: true })
    .then(
      () => {
        bodyRead = true;
      },
      async (error) => {
        if (stopReading.signal.aborted && ending === null) {
          // The pipeline's `stop` drops what is still buffered, a cut last line included.
          await pipeline.writable.close().catch(() => {});
          return;
        }
        end("body_error", `Cannot read the request body: ${messageOf(error)}`);
        await pipeline.writable.abort(error).catch(() => {});
      },
    );

  function finish(kind: RequestErrorKind | null): void {
    if (finished) return;
    finished = true;
    options.stop?.removeEventListener("abort", onStop);
    options.halt?.removeEventListener("abort", onHalt);
    options.onEnd?.(kind);
  }

  // Set when the body's compressed or UTF-16 data broke off (a `final` reject).
  let brokenBody = false;

  function errorLine(error: Record<string, unknown>): Uint8Array {
    return encoder.encode(JSON.stringify({ error }) + "\n");
  }

  return new ReadableStream<Uint8Array>({
    async pull(out) {
      for (;;) {
        let next: ReadableStreamReadResult<Outcome>;
        try {
          next = await reader.read();
        } catch (error) {
          if (ending === null) {
            options.onInternalError?.(error);
            end("internal_error", `internal error: ${messageOf(error)}`);
          }
          next = { done: true, value: undefined };
        }
        const early = ending;
        if (early !== null) {
          if (early.message !== null) {
            out.enqueue(errorLine({ message: early.message, fatal: true }));
          }
          out.close();
          finish(early.kind);
          return;
        }
        if (next.done) {
          if (stopReading.signal.aborted) {
            const message = `server is shutting down: input after line ${lastLine} was not ` +
              "read; send it again";
            out.enqueue(errorLine({ message, fatal: true }));
          }
          out.close();
          finish(stopReading.signal.aborted ? "shutting_down" : brokenBody ? "body_error" : null);
          return;
        }
        const outcome = next.value;
        lastLine = outcome.line;
        meter.addConversation();
        if (outcome.kind === "record") {
          meter.addRecord("written");
          out.enqueue(encoder.encode(outcome.json + "\n"));
          return;
        }
        meter.addRecord("rejected");
        if (outcome.final) {
          // The body's data broke off: the output stops here and says so, rejects=omit or not.
          brokenBody = true;
          out.enqueue(errorLine({ line: outcome.line, message: outcome.reason, fatal: true }));
          continue;
        }
        if (!omitRejects) {
          out.enqueue(errorLine({ line: outcome.line, message: outcome.reason }));
          return;
        }
      }
    },
    cancel() {
      end("client_disconnected", null);
      finish(ending?.kind ?? "client_disconnected");
    },
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
