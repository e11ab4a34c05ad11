/**
 * The error every check of flags, environment and config throws: one line, naming what was at
 * fault, never holding a secret.
 *
 * @module
 */

/**
 * A bad flag, environment variable or config value. The message is one line and never holds
 * the API key or the server token.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCliArgs } from "./cli_args.ts";
 * import { ConfigError } from "./config_error.ts";
 *
 * assert.throws(
 *   () => parseCliArgs(["--colour"]),
 *   (error) => error instanceof ConfigError && error.path === "--colour",
 * );
 * ```
 */
export class ConfigError extends TypeError {
  /** What was wrong: a flag (`--concurrency`), an env var or a config key (`system.foo`). */
  readonly path?: string;

  /**
   * @param message One line, no final period.
   * @param path The flag, environment variable or dotted config key at fault.
   */
  constructor(message: string, path?: string) {
    super(message);
    this.name = "ConfigError";
    this.path = path;
  }
}

/**
 * The first line of `text`, without a trailing colon: parsers quote the source on later lines,
 * and that source may hold a secret.
 *
 * @param text An error message.
 * @returns Its first line.
 */
export function firstLine(text: string): string {
  const end = text.indexOf("\n");
  return (end === -1 ? text : text.slice(0, end)).replace(/:$/, "");
}
