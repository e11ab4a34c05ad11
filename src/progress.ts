/**
 * Progress reporting for long runs: a live line on a terminal, periodic plain lines in logs.
 * The writer and the clock are injected, so nothing here touches stderr or time by itself
 * except {@linkcode countLines}, which reads a file.
 *
 * @module
 */

import { formatCost, formatCount, formatDuration } from "./usage.ts";
import { cutText } from "./text_cut.ts";

/** What the pipeline knows at one moment. */
export interface ProgressState {
  /** Records finished (written or rejected). */
  readonly done: number;
  /** Records expected, or `null` when unknown (stdin). */
  readonly total: number | null;
  readonly rejected: number;
  readonly retries: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** USD so far, or `null` without prices. */
  readonly cost: number | null;
  /** LLM calls under way. */
  readonly inFlight: number;
}

/** Options of {@linkcode createProgress}. */
export interface ProgressOptions {
  /** Receives the text to show, e.g. a write to stderr. */
  readonly write: (text: string) => void;
  /** Draw one live line redrawn in place (`true`) or append plain lines (`false`). */
  readonly isTTY: boolean;
  /**
   * Least time between two lines.
   *
   * @default {100 on a TTY, 5000 otherwise}
   */
  readonly intervalMs?: number;
  /** The clock in milliseconds, e.g. `performance.now`. */
  readonly now: () => number;
  /**
   * Records expected, used when a state's `total` is `null`.
   *
   * @default {null}
   */
  readonly total?: number | null;
  /**
   * Terminal width; the live line is cut to fit so redrawing with `\r` keeps working.
   *
   * @default {Infinity}
   */
  readonly columns?: number;
}

/** A progress display; see {@linkcode createProgress}. */
export interface Progress {
  /** Shows `state` if a line is due; cheap otherwise, so it may be called per record. */
  update(state: ProgressState): void;
  /** Shows a one-off line, e.g. "upstream unavailable, retrying in 8 s (attempt 3/6)". */
  message(text: string): void;
  /** Shows the final state and ends the live line; later updates are ignored. */
  finish(state: ProgressState): void;
}

const CLEAR_LINE = "\r\x1b[2K";
/** The ETA follows the recent rate, so a burst of cache hits on resume does not skew it. */
const RATE_WINDOW_MS = 30_000;

/**
 * Creates a progress display. On a TTY, one line `done/total (pct) | rate | ETA | tokens |
 * cost | retries | rejected | in flight` is redrawn in place at most every `intervalMs`;
 * otherwise the same facts, prefixed with the elapsed time, go out as one plain line every
 * `intervalMs`. Without a total there is no percentage and no ETA.
 *
 * @param options The writer, the clock and the mode.
 * @returns The display; call `finish` at the end.
 *
 * @example A plain line every 5 seconds
 * ```ts
 * import assert from "node:assert/strict";
 * import { createProgress } from "./progress.ts";
 *
 * let clock = 0;
 * const lines: string[] = [];
 * const progress = createProgress({
 *   write: (text) => lines.push(text),
 *   isTTY: false,
 *   now: () => clock,
 * });
 * const state = {
 *   done: 0, total: 100, rejected: 0, retries: 0,
 *   inputTokens: 0, outputTokens: 0, cost: null, inFlight: 0,
 * };
 * progress.update(state);
 * assert.equal(lines.length, 0);
 * clock = 5_000;
 * progress.update({ ...state, done: 50 });
 * assert.match(lines[0], /50\/100 \(50\.0%\) \| 10\.0 conv\/s \| ETA 5s/);
 * ```
 */
export function createProgress(options: ProgressOptions): Progress {
  const { write, isTTY, now } = options;
  const intervalMs = options.intervalMs ?? (isTTY ? 100 : 5000);
  const columns = options.columns ?? Infinity;
  const startMs = now();
  const samples = [{ ms: startMs, done: 0 }];
  // Plain mode waits a full interval before its first line; a TTY shows the first update.
  let lastDrawMs = isTTY ? -Infinity : startMs;
  let lastLine: string | null = null;
  let finished = false;

  function recentRate(ms: number, done: number): number {
    samples.push({ ms, done });
    // Keep the newest sample that is at least a window old as the base.
    while (samples.length > 2 && ms - samples[1].ms >= RATE_WINDOW_MS) samples.shift();
    const base = samples[0];
    return ms > base.ms ? ((done - base.done) * 1000) / (ms - base.ms) : 0;
  }

  function render(state: ProgressState, rate: number): string {
    const total = state.total ?? options.total ?? null;
    const parts: string[] = [];
    if (total === null) {
      parts.push(`${formatCount(state.done)} done`);
    } else {
      const percent = total > 0 ? (state.done / total) * 100 : 100;
      parts.push(`${formatCount(state.done)}/${formatCount(total)} (${percent.toFixed(1)}%)`);
    }
    parts.push(`${rate.toFixed(1)} conv/s`);
    if (total !== null) {
      const remaining = Math.max(0, total - state.done);
      parts.push(
        remaining === 0 ? "ETA 0s" : rate > 0 ? `ETA ${formatDuration(remaining / rate)}` : "ETA ?",
      );
    }
    parts.push(`${compact(state.inputTokens)} in ${compact(state.outputTokens)} out tokens`);
    if (state.cost !== null) parts.push(formatCost(state.cost));
    parts.push(`${formatCount(state.retries)} retries`, `${formatCount(state.rejected)} rejected`);
    if (state.inFlight > 0) parts.push(`${formatCount(state.inFlight)} in flight`);
    return parts.join(" | ");
  }

  function draw(line: string, ms: number): void {
    if (isTTY) {
      lastLine = line.length < columns ? line : cutText(line, Math.max(0, columns - 1));
      write(CLEAR_LINE + lastLine);
    } else {
      write(`[${formatDuration((ms - startMs) / 1000)}] ${line}\n`);
    }
  }

  return {
    update(state) {
      if (finished) return;
      const ms = now();
      if (ms - lastDrawMs < intervalMs) return;
      lastDrawMs = ms;
      draw(render(state, recentRate(ms, state.done)), ms);
    },
    message(text) {
      if (isTTY && lastLine !== null && !finished) {
        write(`${CLEAR_LINE}${text}\n${lastLine}`);
      } else {
        write(`${text}\n`);
      }
    },
    finish(state) {
      if (finished) return;
      finished = true;
      const ms = now();
      const rate = ms > startMs ? (state.done * 1000) / (ms - startMs) : 0;
      draw(render(state, rate), ms);
      if (isTTY) write("\n");
    },
  };
}

/** 950 -> "950", 12_345 -> "12.3k", 4_500_000 -> "4.5M". */
function compact(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1e6) return `${(n / 1e3).toFixed(1)}k`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)}M`;
  return `${(n / 1e9).toFixed(1)}B`;
}

const CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * Counts the lines of a file: newline-terminated lines, plus one if the last line has no
 * newline. Blank lines count; `\r\n` counts once. Reads in 4 MiB chunks with native
 * `indexOf`, so a 1 GB file takes about a second and constant memory.
 *
 * Requires `--allow-read`.
 *
 * @param path The file to count.
 * @returns The line count; 0 for an empty file.
 * @throws {Deno.errors.NotFound} When the file does not exist.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { countLines } from "./progress.ts";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "a\r\nb\n\nlast");
 * assert.equal(await countLines(path), 4);
 * await Deno.remove(path);
 * ```
 */
export async function countLines(path: string): Promise<number> {
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(CHUNK_BYTES);
  let lines = 0;
  let lastByte = 10;
  while (true) {
    const read = await file.read(buffer);
    if (read === null) break;
    if (read === 0) continue;
    const chunk = read === buffer.length ? buffer : buffer.subarray(0, read);
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines += 1;
    lastByte = chunk[read - 1];
  }
  return lastByte === 10 ? lines : lines + 1;
}
