/**
 * The error of a write that fails while cotfit runs: an output, rejects or debug-log file, the
 * cache or its pending log, or stdout. A full disk, an I/O error or a pipe whose reader has gone
 * is neither a bug nor bad input: the CLI stops the run on it, the server fails the request.
 *
 * @module
 */

/**
 * A file or stream cotfit was writing failed.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { WriteError } from "./write_error.ts";
 *
 * const full = new WriteError('"out/a.jsonl"', new Error("No space left on device (os error 28)"));
 * assert.equal(full.message, 'Cannot write "out/a.jsonl": No space left on device (os error 28)');
 * assert.equal(full.readerGone, false);
 * const pipe = new WriteError("stdout", new Deno.errors.BrokenPipe("Broken pipe (os error 32)"));
 * assert.equal(pipe.readerGone, true);
 * ```
 */
export class WriteError extends Error {
  /** The stream's reader went away (a broken pipe, as after `| head`): nothing more can arrive. */
  readonly readerGone: boolean;

  /**
   * @param target What was being written, as the message names it: `"PATH"`, `cache "PATH"`,
   * `stdout`.
   * @param cause The system's error; its message is the reason given.
   */
  constructor(readonly target: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`Cannot write ${target}: ${reason}`, { cause });
    this.name = "WriteError";
    this.readerGone = cause instanceof Deno.errors.BrokenPipe;
  }
}
