/**
 * The thought cache's pending logs: the line format a process appends its new thoughts in (see
 * `src/cache_log.ts`), and how the next process to open the cache folds the logs that a crashed
 * one left into the SQLite table.
 *
 * Requires `--allow-read` and `--allow-write` on the cache's directory.
 *
 * @module
 */

import { readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { ThoughtTable } from "./cache_table.ts";

/** Pending logs sit beside the cache file, named after it. */
const LOG_INFIX = "-pending-";
const LOG_SUFFIX = ".log";
/** A log is made under this name, locked, then renamed (see `src/cache_log.ts`). */
export const STAGING_SUFFIX = ".new";

/**
 * The path of a new pending log for the cache at `cachePath`.
 *
 * @param cachePath The cache file.
 * @param id What makes the name unique, e.g. a random UUID.
 * @returns A path in the cache's directory.
 */
export function pendingLogPath(cachePath: string, id: string): string {
  return join(dirname(cachePath), `${basename(cachePath)}${LOG_INFIX}${id}${LOG_SUFFIX}`);
}

/**
 * The pending logs of the cache at `cachePath`, live or left by a crash.
 *
 * @param cachePath The cache file.
 * @returns Their paths, in no particular order.
 */
export function pendingLogPaths(cachePath: string): string[] {
  return logFiles(cachePath, LOG_SUFFIX);
}

function logFiles(cachePath: string, suffix: string): string[] {
  const prefix = `${basename(cachePath)}${LOG_INFIX}`;
  const dir = dirname(cachePath);
  return readdirSync(dir)
    .filter((name) => name.startsWith(prefix) && name.endsWith(suffix))
    .map((name) => join(dir, name));
}

/**
 * One log line: a JSON array of key and thought. `JSON.stringify` escapes line breaks, so a
 * line is always one row.
 *
 * @param key The cache key.
 * @param thought The thought.
 * @returns The line, with its line feed.
 */
export function logLine(key: string, thought: string): string {
  return `${JSON.stringify([key, thought])}\n`;
}

/**
 * Parses the complete lines of a log's text. A process killed mid-write leaves a torn last line
 * without its line feed: recovery drops it, since its put had not resolved (its call is re-paid).
 * Lines that do not parse as a key and a thought are skipped too.
 *
 * @param text Log text.
 * @returns The rows of its complete, well-formed lines, oldest first.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { logLine, parseLogLines } from "./cache_fold.ts";
 *
 * const text = logLine("k1", "a\nb") + "not json\n" + logLine("k2", "c") + '["k3", "tor';
 * assert.deepEqual(parseLogLines(text), [["k1", "a\nb"], ["k2", "c"]]);
 * ```
 */
export function parseLogLines(text: string): [string, string][] {
  const rows: [string, string][] = [];
  let start = 0;
  for (let end = text.indexOf("\n"); end !== -1; end = text.indexOf("\n", start)) {
    const row = parseRow(text.slice(start, end));
    if (row) rows.push(row);
    start = end + 1;
  }
  return rows;
}

function parseRow(line: string): [string, string] | undefined {
  try {
    const value: unknown = JSON.parse(line);
    if (
      Array.isArray(value) && value.length === 2 && typeof value[0] === "string" &&
      typeof value[1] === "string"
    ) {
      return [value[0], value[1]];
    }
  } catch {
    // A line this module did not write whole: skipped, like a torn one.
  }
  return undefined;
}

/**
 * Folds the pending logs that a dead process left beside the cache, then removes them, with any
 * empty log it died before naming. A log whose writer is alive is locked and left to it.
 *
 * @param table The cache's table, in a database open and migrated.
 * @param cachePath The cache file's path.
 * @returns How many rows were folded.
 */
export function recoverPendingLogs(table: ThoughtTable, cachePath: string): number {
  let folded = 0;
  for (const path of logFiles(cachePath, LOG_SUFFIX + STAGING_SUFFIX)) {
    // Unlocked for a moment after it is made: only one that old was left by a crash.
    withLockedFile(path, (file) => {
      const made = file.statSync().mtime?.getTime() ?? 0;
      if (Date.now() - made > STAGING_GRACE_MS) removeIfPresent(path);
    });
  }
  for (const path of pendingLogPaths(cachePath)) {
    withLockedFile(path, () => {
      let text: string;
      try {
        text = Deno.readTextFileSync(path);
      } catch (error) {
        // Its writer folded and removed it since the listing.
        if (error instanceof Deno.errors.NotFound) return;
        throw error;
      }
      const rows = parseLogLines(text);
      if (rows.length > 0) table.writeAll(rows);
      folded += rows.length;
      removeIfPresent(path);
    });
  }
  return folded;
}

const STAGING_GRACE_MS = 60_000;

/** Runs `fn` if `path` exists and no live process holds its lock. */
function withLockedFile(path: string, fn: (file: Deno.FsFile) => void): void {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  try {
    if (file.tryLockSync(true)) fn(file);
  } finally {
    file.close();
  }
}

/**
 * Removes `path`; one already gone is not an error.
 *
 * @param path The file to remove.
 */
export function removeIfPresent(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}
