/**
 * One run at a time per output folder. Two runs writing one folder would each take the other's
 * unfinished `.partial` for a crashed run's leftover and remove it: one run's exit 0 could then
 * name a file the other left half-written. A run holds an exclusive lock on `.cotfit.lock` in the
 * folder; the system drops it when the process ends, however it ends, so a crash leaves no stale
 * lock.
 *
 * Requires `--allow-read` and `--allow-write` on the folder.
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { OutputError } from "./sink.ts";

/** The lock file's name in the output folder. */
export const LOCK_NAME = ".cotfit.lock";

/**
 * Takes the output folder's lock, creating the folder when missing (and removing it again with
 * the lock if the run left it empty).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockOutputFolder } from "./output_lock.ts";
 *
 * const dir = await Deno.makeTempDir();
 * {
 *   using _held = lockOutputFolder(dir);
 *   assert.throws(() => lockOutputFolder(dir), /another cotfit run is writing/);
 * }
 * using _again = lockOutputFolder(dir);
 * ```
 *
 * @param dir The output folder.
 * @param runFiles Other files the run writes (cache, debug log, rejects): none may be the lock.
 * @returns The lock; disposing of it removes the file and releases the lock.
 * @throws {OutputError} When another run holds the folder, a run file would be the lock file, or
 * the folder or the lock file cannot be created.
 */
export function lockOutputFolder(dir: string, runFiles: readonly string[] = []): Disposable {
  const path = join(dir, LOCK_NAME);
  // Its removal at the end would take a run file given this name with it.
  const taken = runFiles.find((file) => resolve(file) === resolve(path));
  if (taken !== undefined) {
    throw new OutputError(taken, "it is the output folder's lock file: choose another name");
  }
  // The folders this makes, deepest first, for a run that leaves them empty to remove.
  const made: string[] = [];
  try {
    for (let missing = resolve(dir); !existsSync(missing); missing = dirname(missing)) {
      made.push(missing);
    }
    Deno.mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new OutputError(dir, messageOf(error), { cause: error });
  }
  for (;;) {
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { read: true, write: true, create: true });
    } catch (error) {
      throw new OutputError(path, messageOf(error), { cause: error });
    }
    if (!file.tryLockSync(true)) {
      file.close();
      throw new OutputError(
        dir,
        "another cotfit run is writing to it: wait for it to end, or choose another -o",
      );
    }
    // The holder before us may have removed the file between our open and our lock: the lock
    // is then on a file no one else will open, so take the one now at the path instead.
    if (sameFile(file, path)) {
      return {
        [Symbol.dispose]() {
          // Removed while still held, so no run can lock the old file after it is gone.
          try {
            Deno.removeSync(path);
            // A run refused before it wrote anything (a bad prompt) leaves no empty folder.
            for (const folder of made) Deno.removeSync(folder);
          } catch {
            // Gone already, or the folder holds what the run wrote: it stays.
          }
          file.close();
        },
      };
    }
    file.close();
  }
}

function existsSync(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function sameFile(file: Deno.FsFile, path: string): boolean {
  const held = file.statSync();
  let named: Deno.FileInfo;
  try {
    named = Deno.statSync(path);
  } catch {
    return false;
  }
  return held.ino === named.ino && held.dev === named.dev;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
