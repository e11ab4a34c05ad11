/**
 * The thought cache's pending log: this process's puts, appended to a plain file beside the
 * cache and durable once written, in the event-loop turn of the put. The cache frees a call's
 * slot then, rather than after the next SQLite commit, and empties the log after each commit.
 * A crash leaves the log for the next open of the cache to fold (`recoverPendingLogs`).
 *
 * Requires `--allow-read` and `--allow-write` on the cache's directory.
 *
 * @module
 */

import { logLine, pendingLogPath, removeIfPresent, STAGING_SUFFIX } from "./cache_fold.ts";
import { WriteError } from "./write_error.ts";

const encoder = new TextEncoder();

/** One process's pending log; the file is made at the first append. */
export class PendingLog {
  readonly #cachePath: string;
  #file: Deno.FsFile | null = null;
  #path = "";
  /** Lines written since the log was last emptied. */
  #dirty = false;
  #lines: string[] = [];
  #written: PromiseWithResolvers<void> | null = null;
  #encoded = new Uint8Array(64 * 1024);

  /** @param cachePath The cache file the log belongs to. */
  constructor(cachePath: string) {
    this.#cachePath = cachePath;
  }

  /**
   * Appends one put. The lines of the puts made before the next microtask are written together.
   *
   * @returns Resolves once the line is written (a killed process keeps it), rejects with
   * {@linkcode WriteError} if the write fails.
   */
  append(key: string, thought: string): Promise<void> {
    this.#lines.push(logLine(key, thought));
    if (this.#written === null) {
      this.#written = Promise.withResolvers<void>();
      queueMicrotask(() => this.flush());
    }
    return this.#written.promise;
  }

  /** Writes the appended lines now. */
  flush(): void {
    const written = this.#written;
    if (written === null) return;
    const lines = this.#lines;
    this.#written = null;
    this.#lines = [];
    try {
      const file = this.#file ?? this.#open();
      const bytes = this.#encode(lines);
      let done = 0;
      while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
      this.#dirty = true;
      written.resolve();
    } catch (error) {
      written.reject(new WriteError(`cache log "${this.#path || this.#cachePath}"`, error));
    }
  }

  /**
   * Empties the log: call it once everything it holds is committed. Lines still queued are not
   * written yet, so they are kept.
   */
  clear(): void {
    if (!this.#dirty || this.#file === null) return;
    this.#file.truncateSync(0);
    this.#dirty = false;
  }

  /**
   * Closes the log. `committed`: everything it holds is in the cache, so the file is removed;
   * otherwise it stays, unlocked, for the next open of the cache to fold.
   */
  close(committed: boolean): void {
    this.flush();
    if (this.#file === null) return;
    try {
      if (committed) removeIfPresent(this.#path);
    } finally {
      this.#file.close();
      this.#file = null;
    }
  }

  #open(): Deno.FsFile {
    const path = pendingLogPath(this.#cachePath, crypto.randomUUID());
    // Locked under a name recovery does not look at, then renamed: another process opening the
    // cache meanwhile sees the log only once its lock shows that its writer is alive.
    const staging = `${path}${STAGING_SUFFIX}`;
    const file = Deno.openSync(staging, { write: true, create: true, append: true });
    try {
      file.lockSync(true);
      Deno.renameSync(staging, path);
    } catch (error) {
      file.close();
      removeIfPresent(staging);
      throw error;
    }
    this.#path = path;
    this.#file = file;
    return file;
  }

  #encode(lines: string[]): Uint8Array {
    const text = lines.length === 1 ? lines[0] : lines.join("");
    // At most 3 bytes per UTF-16 code unit.
    if (text.length * 3 > this.#encoded.length) {
      this.#encoded = new Uint8Array(Math.max(text.length * 3, this.#encoded.length * 2));
    }
    return this.#encoded.subarray(0, encoder.encodeInto(text, this.#encoded).written);
  }
}
