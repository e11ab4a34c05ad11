/**
 * Resolves CLI inputs (files, directories, `-`) into a plan of input -> output paths, and opens
 * input files for reading.
 *
 * Requires `--allow-read` for the inputs.
 *
 * @module
 */

import { basename, join, relative, resolve } from "node:path";
import { PARQUET_TO_JSONL } from "./decompress.ts";

/** One input and where its results go. */
export interface InputPlan {
  /** The file path, or `-` for stdin. */
  readonly input: string;
  /** Output file path; `null` for stdin (results go to stdout). */
  readonly output: string | null;
  /** Rejects file path; `null` for stdin (see `--rejects`). */
  readonly rejects: string | null;
  /** `.json` files may hold one JSON array of records. */
  readonly format: "jsonl" | "auto";
  /**
   * A regular file, which may be read more than once (to count lines, to look at its first
   * bytes); stdin, a named pipe or `<(command)` can be read once only.
   */
  readonly regular: boolean;
}

/** A usage problem with the inputs or the output directory. */
export class InputError extends TypeError {
  /**
   * @param message What is wrong and, where it helps, what to do.
   * @param options The underlying error as `cause`.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "InputError";
  }
}

/** An input that exists but cannot be read: no permission, not a file one can read, I/O error. */
export class InputReadError extends InputError {
  /** Why, from the system. */
  readonly reason: string;
  /**
   * @param path The input, as planned.
   * @param cause The error of the open or read that failed.
   */
  constructor(readonly path: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`Cannot read input "${path}": ${reason}`, { cause });
    this.name = "InputReadError";
    this.reason = reason;
  }
}

// Gzip-compressed inputs (`data.jsonl.gz`) are read as their text and written uncompressed.
const RECORD_FILE = /\.(jsonl|json)(\.gz)?$/i;
const GZIP_SUFFIX = /\.gz$/i;
const PARQUET_FILE = /\.parquet$/i;
const OUR_OUTPUTS = /\.rejects\.jsonl$|(^|[\\/])usage\.json$/i;

/**
 * Lists the inputs: a file maps to `OUT/<base name>`, a directory to every `.jsonl`/`.json`
 * (or `.jsonl.gz`/`.json.gz`) below it (sorted, recursively) at the same relative path under
 * `OUT`, `-` to stdout. A `.gz` input's output drops the `.gz`: it is written uncompressed.
 * Output paths that collide, or an output that would overwrite its input, are usage errors.
 * Every input file is opened and its first byte read, so a run that could not read one stops
 * here, before it spends anything. A named pipe is not: opening one waits for its writer, and a
 * byte read from it would be lost to the conversion.
 *
 * @param inputs Paths as given on the command line or in the config.
 * @param outputDir The output directory; required unless the only input is `-`.
 * @returns The plan, in input order.
 * @throws {InputReadError} On an input file or directory that cannot be read.
 * @throws {InputError} On a missing input, a directory with no record file, a missing output
 * directory, an output directory that is a file or an input directory, or colliding outputs.
 */
export async function planInputs(
  inputs: readonly string[],
  outputDir: string | null,
): Promise<InputPlan[]> {
  if (inputs.length === 0) throw new InputError("no input: pass a file, a directory or - (stdin)");
  const plans: InputPlan[] = [];
  const outRoot = outputDir === null ? null : resolve(outputDir);
  if (outputDir !== null) {
    const info = await Deno.stat(outputDir).catch(() => null);
    if (info !== null && !info.isDirectory) {
      throw new InputError(`output directory "${outputDir}" is a file: choose another -o`);
    }
  }
  for (const input of inputs) {
    if (input === "-") {
      plans.push({ input, output: null, rejects: null, format: "jsonl", regular: false });
      continue;
    }
    if (outRoot === null) {
      throw new InputError(`no output directory for "${input}": pass -o DIR (or use - for stdout)`);
    }
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(input);
    } catch (error) {
      throw new InputError(`Cannot read input "${input}": ${(error as Error).message}`);
    }
    if (info.isDirectory) {
      if (resolve(input) === outRoot) {
        throw new InputError(
          `output directory "${outputDir}" is the input directory: outputs would overwrite ` +
            "inputs; choose another -o",
        );
      }
      const { files, parquet } = await listRecordFiles(resolve(input), outRoot);
      // A run that reads nothing and says "0 written" looks like success: say why instead.
      if (files.length === 0) {
        throw new InputError(
          `no .jsonl or .json file in "${input}" (nor a .gz of one; outputs of cotfit excluded)` +
            (parquet > 0
              ? `; its ${parquet} .parquet file${parquet === 1 ? " is" : "s are"} not read: ` +
                `convert ${parquet === 1 ? "it" : "them"} to JSONL first (${PARQUET_TO_JSONL})`
              : ""),
        );
      }
      for (const file of files) {
        await probe(file);
        plans.push(planFile(file, join(outRoot, relative(resolve(input), file)), true));
      }
    } else if (PARQUET_FILE.test(input)) {
      throw new InputError(
        `Cannot read input "${input}": cotfit does not read Parquet; convert it to JSONL first ` +
          `(${PARQUET_TO_JSONL})`,
      );
    } else {
      // Opening a socket fails at once, so it is refused here; opening a pipe waits for its writer.
      if (info.isFile || info.isSocket) await probe(input);
      plans.push(planFile(input, join(outRoot, basename(input)), info.isFile));
    }
  }
  const seen = new Map<string, string>();
  for (const plan of plans) {
    if (plan.output === null) continue;
    if (resolve(plan.output) === resolve(plan.input)) {
      throw new InputError(`output would overwrite its input "${plan.input}": choose another -o`);
    }
    const earlier = seen.get(plan.output);
    if (earlier !== undefined) {
      throw new InputError(
        `inputs "${earlier}" and "${plan.input}" would both write "${plan.output}": process them separately`,
      );
    }
    seen.set(plan.output, plan.input);
  }
  if (plans.filter((plan) => plan.input === "-").length > 1) {
    throw new InputError("stdin (-) can be read only once");
  }
  return plans;
}

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
 * import { InputReadError, openInput } from "./inputs.ts";
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

/** Opens `path` and reads its first byte: what the conversion will do, in the same way. */
async function probe(path: string): Promise<void> {
  try {
    using file = await Deno.open(path, { read: true });
    await file.read(new Uint8Array(1));
  } catch (error) {
    throw new InputReadError(path, error);
  }
}

function planFile(input: string, compressedOutput: string, regular: boolean): InputPlan {
  const output = compressedOutput.replace(GZIP_SUFFIX, "");
  return {
    input,
    output,
    rejects: output.replace(/\.(jsonl|json)$/i, "") + ".rejects.jsonl",
    format: /\.json$/i.test(input.replace(GZIP_SUFFIX, "")) ? "auto" : "jsonl",
    regular,
  };
}

/**
 * The record files below `dir`, links followed: a Hugging Face hub snapshot is a folder of links
 * to content-named blobs, so its files are found by their links' names. A folder reached twice
 * (a link back up the tree) is walked once.
 */
async function listRecordFiles(
  dir: string,
  skip: string,
): Promise<{ files: string[]; parquet: number }> {
  const found: string[] = [];
  // Counted to say why a folder of them has nothing to read.
  let parquet = 0;
  const skipReal = await Deno.realPath(skip).catch(() => skip);
  const walked = new Set<string>();
  async function walk(current: string) {
    const entries: Deno.DirEntry[] = [];
    try {
      const real = await Deno.realPath(current);
      if (current === skip || real === skipReal || walked.has(real)) return;
      walked.add(real);
      for await (const entry of Deno.readDir(current)) entries.push(entry);
    } catch (error) {
      throw new InputReadError(current, error);
    }
    for (const entry of entries) {
      const path = join(current, entry.name);
      const wanted = RECORD_FILE.test(entry.name) && !OUR_OUTPUTS.test(entry.name);
      let { isDirectory, isFile } = entry;
      if (entry.isSymlink) {
        const target = await Deno.stat(path).catch(() => null);
        if (target === null) {
          if (wanted) throw new InputError(`Cannot read input "${path}": it links to nothing`);
          continue;
        }
        ({ isDirectory, isFile } = target);
      }
      if (isDirectory) await walk(path);
      else if (isFile && wanted) found.push(path);
      else if (isFile && PARQUET_FILE.test(entry.name)) parquet++;
    }
  }
  await walk(dir);
  return { files: found.sort(), parquet };
}
