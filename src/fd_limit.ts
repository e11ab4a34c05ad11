/**
 * Each LLM call in flight holds a connection, so a concurrency above the process's open-file
 * limit (`ulimit -n`, often 1,024) makes calls fail with "Too many open files", which reads like
 * an upstream failure. This says so before a run starts.
 *
 * Requires `--allow-read` for `/proc/self/limits` (Linux); elsewhere, or without it, no check.
 *
 * @module
 */

/** Files a run holds besides its connections: inputs, outputs, cache, logs, the runtime's own. */
const OTHER_FILES = 64;

/**
 * A warning when `concurrency` connections, plus the files a run holds besides, would pass the
 * process's soft open-file limit.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { openFileWarning } from "./fd_limit.ts";
 *
 * assert.match(openFileWarning(4096, 1024) ?? "", /ulimit -n/);
 * assert.equal(openFileWarning(64, 1024), null);
 * ```
 *
 * @param concurrency LLM calls in flight at most.
 * @param limit The soft limit; read from the system when not given.
 * @returns The warning line (no newline), or `null` when the limit is high enough or unknown.
 */
export function openFileWarning(
  concurrency: number,
  limit: number | null = openFileLimit(),
): string | null {
  if (limit === null || concurrency + OTHER_FILES <= limit) return null;
  return `warning: --concurrency ${concurrency} needs about ${concurrency + OTHER_FILES} open ` +
    `files, but this process may open ${limit}: calls past it fail with "Too many open files". ` +
    `Raise the limit (ulimit -n ${nextPowerOfTwo(concurrency + OTHER_FILES)}) or lower ` +
    `--concurrency to ${Math.max(1, limit - OTHER_FILES)}`;
}

/** The soft "Max open files" of this process, or `null` when it cannot be read. */
function openFileLimit(): number | null {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/self/limits");
  } catch {
    return null;
  }
  const soft = /^Max open files\s+(\d+)/m.exec(text)?.[1];
  return soft === undefined ? null : Number(soft);
}

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(n));
}
