/**
 * Buffered text sinks: files written under a temporary name and renamed when complete, so a
 * crashed run never leaves a truncated file that looks finished, and plain streams (stdout).
 *
 * Requires `--allow-write` for file sinks.
 *
 * @module
 */

import { dirname } from "node:path";
import { WriteError } from "./write_error.ts";

/** A text sink that batches small writes into large ones. */
export interface TextSink {
  /**
   * Queues `text`, then `end` if given (a record and its line feed are written without building
   * the joined string, a copy of the record); resolves once the buffer is below its limit
   * (backpressure).
   */
  write(text: string, end?: string): Promise<void>;
  /**
   * Flushes and finishes; for a file sink, renames it into place, and on failure removes the
   * temporary file.
   */
  commit(): Promise<void>;
  /** Drops what was written (removes the temporary file). */
  discard(): Promise<void>;
}

// Large enough to amortise syscalls, small enough to keep memory flat.
const FLUSH_BYTES = 256 * 1024;
/** Room for a flush's worth of text and the text that crosses the mark. */
const BUFFER_BYTES = 2 * FLUSH_BYTES;

const encoder = new TextEncoder();

/**
 * Batches text into writes of about {@linkcode FLUSH_BYTES}. Text is encoded as it arrives into
 * a buffer that is reused once its write resolves: a fresh `ArrayBuffer` per flush
 * (`TextEncoder.encode`) cost more than the encoding itself, in page faults on fresh memory. So
 * `writeBytes` must be done with a chunk once its write resolves, as a file's is. A text too
 * large for a buffer is encoded on its own.
 */
function bufferedSink(
  writeBytes: (bytes: Uint8Array) => Promise<void>,
  finish: () => Promise<void>,
  abort: () => Promise<void>,
): TextSink {
  // Buffers whose write has completed; a write in progress keeps its own.
  const spare: Uint8Array[] = [];
  let buffer: Uint8Array | null = null;
  let used = 0;
  async function flush() {
    if (buffer === null || used === 0) return;
    const full = buffer;
    const bytes = full.subarray(0, used);
    buffer = null;
    used = 0;
    await writeBytes(bytes);
    spare.push(full);
  }
  return {
    async write(text, end = "") {
      // At most 3 bytes per UTF-16 code unit.
      const room = (text.length + end.length) * 3;
      if (room > BUFFER_BYTES) {
        await flush();
        await writeBytes(encoder.encode(text + end));
        return;
      }
      if (buffer !== null && room > buffer.length - used) await flush();
      buffer ??= spare.pop() ?? new Uint8Array(BUFFER_BYTES);
      used += encoder.encodeInto(text, buffer.subarray(used)).written;
      if (end !== "") used += encoder.encodeInto(end, buffer.subarray(used)).written;
      if (used >= FLUSH_BYTES) await flush();
    },
    async commit() {
      try {
        await flush();
        await finish();
      } catch (error) {
        // Unfinished, it goes as a discarded one would: no caller is left to discard it.
        await abort();
        throw error;
      }
    },
    async discard() {
      buffer = null;
      used = 0;
      await abort();
    },
  };
}

/**
 * Thrown by {@linkcode openAtomicFile} when the file or its directory cannot be created (its
 * sink's writes throw {@linkcode WriteError}).
 */
export class OutputError extends Error {
  /**
   * @param path The file that could not be opened.
   * @param reason Why, from the system.
   * @param options The underlying error as `cause`.
   */
  constructor(readonly path: string, readonly reason: string, options?: ErrorOptions) {
    super(`Cannot write "${path}": ${reason}`, options);
    this.name = "OutputError";
  }
}

/**
 * Opens `path + ".partial"` for writing; `commit` renames it to `path`. A `.partial` left by an
 * earlier run is removed first, not truncated: it may be a link, and writing through it would
 * overwrite the file it links to.
 *
 * @param path The final file path; its directory is created when missing.
 * @returns The sink.
 * @throws {OutputError} When the directory or the file cannot be created, or `path` is a
 * directory. The sink's `write` and `commit` throw {@linkcode WriteError} naming `path`.
 */
export async function openAtomicFile(path: string): Promise<TextSink> {
  const temporary = `${path}.partial`;
  let file: Deno.FsFile;
  try {
    // Refused now, not at `commit`: the rename onto a directory would fail after the whole run.
    const existing = await Deno.stat(path).catch(() => null);
    if (existing?.isDirectory) throw new Error("it is a directory");
    await Deno.mkdir(dirname(path), { recursive: true });
    await Deno.remove(temporary).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    file = await Deno.open(temporary, { write: true, createNew: true });
  } catch (error) {
    throw new OutputError(path, error instanceof Error ? error.message : String(error), {
      cause: error,
    });
  }
  const failed = (error: unknown) => new WriteError(`"${path}"`, error);
  let open = true;
  const close = () => {
    if (open) file.close();
    open = false;
  };
  // Not `file.writable`: it keeps writes under 64 KiB in a buffer, and when its flush at close
  // fails (a full disk) the stream still closes cleanly (Deno 2.9), so a cut file looked done.
  return bufferedSink(
    async (bytes) => {
      try {
        for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
      } catch (error) {
        throw failed(error);
      }
    },
    async () => {
      try {
        close();
        await Deno.rename(temporary, path);
      } catch (error) {
        throw failed(error);
      }
    },
    async () => {
      try {
        close();
      } catch {
        // Already unusable: removing the file is what matters.
      }
      await Deno.remove(temporary).catch(() => {});
    },
  );
}

/**
 * Wraps a byte stream (stdout, stderr) as a sink; `commit` releases it without closing it. Each
 * write goes out at once, so a reader downstream of a pipe sees lines as they are made, and in
 * a chunk of its own: a stream may keep the chunks it is given (a `TransformStream` passes them
 * on), so no buffer is reused.
 *
 * @param stream Where the text goes.
 * @param name How errors name the stream, e.g. `stdout`.
 * @returns The sink; its `write` throws {@linkcode WriteError} when the stream fails.
 */
export function streamSink(stream: WritableStream<Uint8Array>, name: string): TextSink {
  const writer = stream.getWriter();
  const failed = (error: unknown) => Promise.reject(new WriteError(name, error));
  return {
    write: (text, end) =>
      writer.write(encoder.encode(end === undefined ? text : text + end)).catch(failed),
    commit() {
      writer.releaseLock();
      return Promise.resolve();
    },
    discard() {
      writer.releaseLock();
      return Promise.resolve();
    },
  };
}
