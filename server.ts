/**
 * cotfit server: a Hono app that streams rephrased JSONL back line by line.
 *
 * @module
 */

import type { Options } from "./src/config.ts";

/**
 * Starts the server with the given options and resolves with the exit code once it has stopped.
 *
 * @param _options Resolved options.
 * @returns The exit code.
 */
export function serve(_options: Options): Promise<number> {
  console.error("error: the server is not built yet");
  return Promise.resolve(2);
}
