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

import { join } from "node:path";
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
 * @returns The lock; disposing of it removes the file and releases the lock.
 * @throws {OutputError} When another run holds the folder, or the folder or the lock file cannot
 * be created.
 */
export function lockOutputFolder(dir: string): Disposable {
  const path = join(dir, LOCK_NAME);
  let made = false;
  try {
    made = !existsSync(dir);
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
            if (made) Deno.removeSync(dir);
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
