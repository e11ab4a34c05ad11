/**
 * Resolves CLI inputs (files, directories, `-`) into a plan of input -> output paths.
 *
 * Requires `--allow-read` for the inputs.
 *
 * @module
 */

import { fstatSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { PARQUET_TO_JSONL } from "./decompress.ts";

/** One input and where its results go. */
export interface InputPlan {
  /** The file path, or `-` for stdin. */
  readonly input: string;
  /** Output file path; `null` for stdin (results go to stdout). */
  readonly output: string | null;
  /** Rejects file path; for stdin `--rejects`, or `null`: its rejects go to stderr. */
  readonly rejects: string | null;
  /** `.json` files may hold one JSON array of records. */
  readonly format: "jsonl" | "auto";
  /**
   * A regular file, which may be read more than once (to count lines, to look at its first
   * bytes); stdin, a named pipe or `<(command)` can be read once only.
   */
  readonly regular: boolean;
}

/** Files a run writes besides each input's output and rejects; checked with them. */
export interface RunFiles {
  /** `--rejects`: where stdin's rejects go; `null` sends them to stderr. @default {null} */
  readonly rejects?: string | null;
  /** `--debug-log`. @default {null} */
  readonly debugLog?: string | null;
  /** The persistent cache; `null` for none. @default {null} */
  readonly cache?: string | null;
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

/**
 * Why a directory walk left a file out: `cotfit-output` for a name cotfit writes (`*.rejects.jsonl`,
 * `usage.json`), `parquet` for Parquet, which cotfit does not read, `metadata` for the JSON files
 * Hugging Face `datasets` writes beside the data (`dataset_info.json`, `state.json`...).
 */
export type SkipReason = "cotfit-output" | "parquet" | "metadata";

// Gzip-compressed inputs (`data.jsonl.gz`) are read as their text and written uncompressed.
// `.ndjson` is JSONL by another name.
const RECORD_FILE = /\.(jsonl|ndjson|json)(\.gz)?$/i;
const GZIP_SUFFIX = /\.gz$/i;
const PARQUET_FILE = /\.parquet$/i;
const OUR_OUTPUTS = /\.rejects\.jsonl$|(^|[\\/])usage\.json$/i;
// `save_to_disk` and the hub's loaders describe a dataset in these; they hold no records.
const DATASET_METADATA = /^(dataset_info|dataset_infos|dataset_dict|state)\.json$/i;
/** Written by every run into its output directory (see `run.ts`). */
const USAGE_FILE = "usage.json";

/**
 * Lists the inputs: a file maps to `OUT/<base name>`, a directory to every `.jsonl`, `.ndjson`
 * or `.json` (or a `.gz` of one) below it (sorted, recursively) at the same relative path under
 * `OUT`, `-` to stdout. A `.gz` input's output drops the `.gz`: it is written uncompressed.
 * Files to be written (outputs, rejects, usage, and `files`) that collide, that are a directory,
 * or that would overwrite an input are usage errors, whatever the paths: a file to be written
 * that exists already is compared with the inputs, stdin's file among them, by device and inode
 * (by real path where the system has no inodes), so an input that links to an output, or is a
 * hard link of one, is refused too. Every input file is opened and its first byte read, so a run
 * that could not read one stops here, before it spends anything. A named pipe is not: opening
 * one waits for its writer, and a byte read from it would be lost to the conversion.
 *
 * @param inputs Paths as given on the command line or in the config.
 * @param outputDir The output directory; required unless the only input is `-`.
 * @param files The run's other files: stdin's rejects, the debug log, the cache.
 * @param onSkipped Told of each file a directory walk leaves out that a user may have meant as
 * data: cotfit's own rejects and usage files, Parquet files.
 * @returns The plan, in input order.
 * @throws {InputReadError} On an input file or directory that cannot be read.
 * @throws {InputError} On a missing input, a directory with no record file, a missing output
 * directory, an output directory that is a file or an input directory, or a file to be written
 * that collides with another, is a directory or is an input.
 */
export async function planInputs(
  inputs: readonly string[],
  outputDir: string | null,
  files: RunFiles = {},
  onSkipped: (path: string, why: SkipReason) => void = () => {},
): Promise<InputPlan[]> {
  if (inputs.length === 0) throw new InputError("no input: pass a file, a directory or - (stdin)");
  const plans: InputPlan[] = [];
  const outRoot = outputDir === null ? null : resolve(outputDir);
  const view = directoryView();
  if (outputDir !== null) {
    const info = await Deno.stat(outputDir).catch(() => null);
    if (info !== null && !info.isDirectory) {
      throw new InputError(`output directory "${outputDir}" is a file: choose another -o`);
    }
  }
  for (const input of inputs) {
    if (input === "-") {
      plans.push({
        input,
        output: null,
        rejects: files.rejects ?? null,
        format: "jsonl",
        regular: false,
      });
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
      // Through a link too: the walk would skip the whole input as the output directory.
      if (
        resolve(input) === outRoot ||
        view.realDir(resolve(input)) === view.realDir(outRoot)
      ) {
        throw new InputError(
          `output directory "${outputDir}" is the input directory: outputs would overwrite ` +
            "inputs; choose another -o",
        );
      }
      const { files, parquet } = await listRecordFiles(resolve(input), outRoot, onSkipped);
      // A run that reads nothing and says "0 written" looks like success: say why instead.
      if (files.length === 0) {
        throw new InputError(
          `no .jsonl, .ndjson or .json file in "${input}" (nor a .gz of one; outputs of cotfit ` +
            "and dataset metadata excluded)" +
            (parquet > 0
              ? `; its ${parquet} .parquet file${parquet === 1 ? " is" : "s are"} not read: ` +
                `convert ${parquet === 1 ? "it" : "them"} to JSONL first (${PARQUET_TO_JSONL})`
              : ""),
        );
      }
      for (const file of files) {
        probe(file);
        plans.push(planFile(file, join(outRoot, relative(resolve(input), file)), true));
      }
    } else if (PARQUET_FILE.test(input)) {
      throw new InputError(
        `Cannot read input "${input}": cotfit does not read Parquet; convert it to JSONL first ` +
          `(${PARQUET_TO_JSONL})`,
      );
    } else {
      // Opening a socket fails at once, so it is refused here; opening a pipe waits for its writer.
      if (info.isFile || info.isSocket) probe(input);
      plans.push(planFile(input, join(outRoot, basename(input)), info.isFile));
    }
  }
  // The probes and checks make synchronous calls, a few per input: as asynchronous ones (about
  // 40 µs each, against 6) they made planning 10,000 files take 1.6 to 3.5 s instead of 0.3.
  const usageFile = outRoot === null ? null : join(outRoot, USAGE_FILE);
  refuseOverwrites(plans, writtenFiles(plans, usageFile, files), view);
  if (plans.filter((plan) => plan.input === "-").length > 1) {
    throw new InputError("stdin (-) can be read only once");
  }
  return plans;
}

/** A file the run will write, as the overwrite checks see it. */
interface Written {
  /** What it is, as messages name it: `output`, `rejects file`, `debug log`... */
  readonly kind: string;
  readonly path: string;
  /** The input whose results it holds; `null` for a file of the whole run. */
  readonly writer: InputPlan | null;
  /** The option that chooses its path, named in the advice. */
  readonly flag: string;
  /** Written as `PATH.partial`, then renamed into place (see `sink.ts`). */
  readonly atomic: boolean;
}

/**
 * Every file the run writes. The cache comes before the debug log so that, when they collide,
 * the message blames the flag the user chose rather than the default cache beside the outputs.
 */
function writtenFiles(
  plans: readonly InputPlan[],
  usageFile: string | null,
  files: RunFiles,
): Written[] {
  const written: Written[] = [];
  for (const plan of plans) {
    if (plan.output !== null) {
      written.push({ kind: "output", path: plan.output, writer: plan, flag: "-o", atomic: true });
    }
    if (plan.rejects !== null) {
      const flag = plan.input === "-" ? "--rejects" : "-o";
      written.push({ kind: "rejects file", path: plan.rejects, writer: plan, flag, atomic: true });
    }
  }
  const run = (kind: string, path: string | null | undefined, flag: string, atomic: boolean) => {
    if (path) written.push({ kind, path, writer: null, flag, atomic });
  };
  run("usage file", usageFile, "-o", false);
  run("cache", files.cache, "--cache", false);
  run("debug log", files.debugLog, "--debug-log", true);
  return written;
}

/**
 * Refuses a plan that would write over one of its inputs, write one file twice, or write where a
 * directory is: each file to be written and its temporary `.partial`, against every input and
 * each other. A file to be written that already exists is compared with the inputs by device and
 * inode, which its links share: an input that links to its output's name, or is a hard link of
 * it, would be replaced when the output is renamed into place. A directory in its place would
 * fail that rename, after the run was paid for. Files to be written are compared with each other
 * by where their directory really is.
 */
function refuseOverwrites(
  plans: readonly InputPlan[],
  written: readonly Written[],
  view: DirectoryView,
): void {
  // Only a file that exists can be an input, and in a new output directory none does: the inputs
  // are looked up once one does.
  let inputs: Map<string, InputPlan> | null = null;
  function refuse(file: Written, kind: string, path: string): void {
    // A link to nothing is replaced, not written through.
    const info = view.has(path) ? statOrNull(path) : null;
    if (info === null) return;
    const advice = `choose another ${file.flag}`;
    if (info.isDirectory) throw new InputError(`${kind} "${path}" is a directory: ${advice}`);
    inputs ??= identifyInputs(plans);
    const input = inputs.get(identityOf(path, info));
    if (input === undefined) return;
    if (input.input === "-") {
      throw new InputError(`${kind} "${path}" would overwrite the file on stdin: ${advice}`);
    }
    const whose = input === file.writer ? "its input" : "input";
    if (resolve(path) === resolve(input.input)) {
      throw new InputError(`${kind} would overwrite ${whose} "${input.input}": ${advice}`);
    }
    throw new InputError(
      `${kind} "${path}" would overwrite ${whose} "${input.input}", the same file through a ` +
        `link: ${advice}`,
    );
  }

  const claims = new Map<string, Claim>();
  function claim(file: Written, kind: string, path: string): void {
    const entry = join(view.realDir(dirname(path)), basename(path));
    const earlier = claims.get(entry);
    if (earlier === undefined) claims.set(entry, { file, kind, path });
    else throw new InputError(collision(earlier, { file, kind, path }));
  }

  for (const file of written) {
    refuse(file, file.kind, file.path);
    claim(file, file.kind, file.path);
    if (!file.atomic) continue;
    const temporary = `${file.path}.partial`;
    refuse(file, `temporary ${file.kind}`, temporary);
    claim(file, `temporary ${file.kind}`, temporary);
  }
}

/** A file to be written, or its temporary, under the name a message gives it. */
interface Claim {
  readonly file: Written;
  readonly kind: string;
  readonly path: string;
}

/** Why two files to be written are one, blaming the one a flag other than -o chose. */
function collision(earlier: Claim, later: Claim): string {
  const [a, b] = [earlier.file, later.file];
  if (a.flag === "-o" && b.flag === "-o") {
    if (a.writer !== null && b.writer !== null) {
      return `inputs "${a.writer.input}" and "${b.writer.input}" would both write ` +
        `"${later.path}": process them separately`;
    }
    // The one -o file of the whole run is the usage file.
    const plan = a.writer ?? b.writer;
    return `input "${plan?.input}" would write "${later.path}", where the run writes its usage: ` +
      "rename it or choose another -o";
  }
  const [subject, other] = b.flag !== "-o" ? [later, earlier] : [earlier, later];
  const owner = other.file.writer;
  const what = owner === null
    ? `the run's ${other.kind}`
    : `the ${other.kind} of ${owner.input === "-" ? "stdin" : `input "${owner.input}"`}`;
  return `${subject.kind} "${subject.path}" is also ${what}: choose another ${subject.file.flag}`;
}

function identifyInputs(plans: readonly InputPlan[]): Map<string, InputPlan> {
  const inputs = new Map<string, InputPlan>();
  for (const plan of plans) {
    if (plan.input === "-") {
      const stdin = stdinIdentity();
      if (stdin !== null) inputs.set(stdin, plan);
      continue;
    }
    try {
      inputs.set(identityOf(plan.input), plan);
    } catch (error) {
      throw new InputReadError(plan.input, error);
    }
  }
  return inputs;
}

/**
 * The file stdin reads (`- < data.jsonl`), which a run must not write over either, as
 * {@linkcode identityOf} names it; `null` for a pipe or a terminal, which no path names. Deno
 * asks for all permissions to stat `/dev/stdin`; Node's `fstat` of descriptor 0 asks for none.
 */
function stdinIdentity(): string | null {
  try {
    const info = fstatSync(0);
    return info.isFile() && info.ino > 0 ? `${info.dev}:${info.ino}` : null;
  } catch {
    return null;
  }
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

/**
 * What `path` is, whatever it is called: its device and inode, which every link to it shares, or
 * its real path where the system gives no inode.
 */
function identityOf(path: string, info = Deno.statSync(path)): string {
  return info.ino === null ? Deno.realPathSync(path) : `${info.dev}:${info.ino}`;
}

/** Where directories really are and what they hold, each looked up once: outputs share a few. */
interface DirectoryView {
  /**
   * The real path of `dir`; one that does not exist yet resolves through its nearest existing
   * parent, where it will be made.
   */
  realDir(dir: string): string;
  /** Whether anything (a file, a link, even one to nothing) is at `path`. */
  has(path: string): boolean;
}

function directoryView(): DirectoryView {
  const reals = new Map<string, string>();
  const listings = new Map<string, Set<string> | null>();
  function realDir(dir: string): string {
    let real = reals.get(dir);
    if (real === undefined) {
      try {
        real = Deno.realPathSync(dir);
      } catch {
        const parent = dirname(dir);
        real = parent === dir ? dir : join(realDir(parent), basename(dir));
      }
      reals.set(dir, real);
    }
    return real;
  }
  // A listing per directory rather than a failed lookup per file: each failure is an exception.
  function has(path: string): boolean {
    const dir = dirname(path);
    let names = listings.get(dir);
    if (names === undefined) {
      try {
        names = new Set(Array.from(Deno.readDirSync(dir), (entry) => entry.name));
      } catch {
        names = null;
      }
      listings.set(dir, names);
    }
    return names?.has(basename(path)) ?? false;
  }
  return { realDir, has };
}

/** Opens `path` and reads its first byte: what the conversion will do, in the same way. */
function probe(path: string): void {
  try {
    using file = Deno.openSync(path, { read: true });
    file.readSync(new Uint8Array(1));
  } catch (error) {
    throw new InputReadError(path, error);
  }
}

function planFile(input: string, compressedOutput: string, regular: boolean): InputPlan {
  const output = compressedOutput.replace(GZIP_SUFFIX, "");
  return {
    input,
    output,
    rejects: output.replace(/\.(jsonl|ndjson|json)$/i, "") + ".rejects.jsonl",
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
  onSkipped: (path: string, why: SkipReason) => void,
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
      const recordFile = RECORD_FILE.test(entry.name);
      const metadata = DATASET_METADATA.test(entry.name);
      const wanted = recordFile && !OUR_OUTPUTS.test(entry.name) && !metadata;
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
      else if (isFile && metadata) onSkipped(path, "metadata");
      else if (isFile && recordFile) onSkipped(path, "cotfit-output");
      else if (isFile && PARQUET_FILE.test(entry.name)) {
        parquet++;
        onSkipped(path, "parquet");
      }
    }
  }
  await walk(dir);
  return { files: found.sort(), parquet };
}
