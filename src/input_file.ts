/**
 * Input files as byte streams whose read failures name the file.
 *
 * Requires `--allow-read`.
 *
 * @module
 */

import { InputReadError } from "./inputs.ts";

/**
 * Opens an input file as a byte stream whose failures, when it opens and at every later read, are
 * {@linkcode InputReadError}s naming it: a file that became unreadable after it was planned, or
 * an I/O error mid-read, stops the run with the file's name instead of a stack trace.
 *
 * Requires `--allow-read`.
 *
 * @param path The input file.
 * @returns Its bytes; cancelling the stream closes the file.
 * @throws {InputReadError} When the file cannot be opened.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { openInput } from "./input_file.ts";
 * import { InputReadError } from "./inputs.ts";
 *
 * const path = await Deno.makeTempFile({ suffix: ".jsonl" });
 * await Deno.writeTextFile(path, '{"a":1}\n');
 * assert.equal(await new Response(await openInput(path)).text(), '{"a":1}\n');
 * await Deno.remove(path);
 * await assert.rejects(
 *   () => openInput(path),
 *   (error: InputReadError) => error instanceof InputReadError && error.path === path,
 * );
 * ```
 */
export async function openInput(path: string): Promise<ReadableStream<Uint8Array>> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    throw new InputReadError(path, error);
  }
  const reader = file.readable.getReader();
  // Pulled on demand, as the file's own stream is: no read ahead beyond what the reader asks for.
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (error) {
        throw new InputReadError(path, error);
      }
      if (chunk.done) controller.close();
      else controller.enqueue(chunk.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
