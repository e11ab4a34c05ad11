/**
 * Keeps the API key and the server token out of anything printed: options print their secrets as
 * `***`, and {@linkcode redactOptions} makes a copy safe to log.
 *
 * @module
 */

import type { Options } from "./config.ts";

/** {@linkcode Options} safe to print: secrets are `"***"` when set, `null` when not. */
export type RedactedOptions = Omit<Options, "apiKey" | "token"> & {
  readonly apiKey: "***" | null;
  readonly token: "***" | null;
};

/**
 * Returns a plain copy of `options` that is safe to print or log: `apiKey` and `token` are
 * `"***"` when set and `null` when not.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveOptions } from "./config.ts";
 * import { redactOptions } from "./redact.ts";
 *
 * const options = resolveOptions({
 *   flags: { model: "m" },
 *   positionals: ["in.jsonl"],
 *   env: { OPENAI_API_KEY: "sk-secret" },
 * });
 * const copy = { ...options, quiet: true };
 * assert.equal(redactOptions(copy).apiKey, "***");
 * assert.equal(redactOptions(copy).token, null);
 * ```
 *
 * @param options Options, or a copy of them.
 * @returns A new object without secrets.
 */
export function redactOptions(options: Options): RedactedOptions {
  const { apiKey, token, ...visible } = options;
  return {
    ...visible,
    apiKey: apiKey === undefined ? null : "***",
    token: token === undefined ? null : "***",
  };
}

/**
 * Freezes `visible` with its secrets, so that printing the object itself (JSON, `console.log`,
 * `Deno.inspect`) shows them redacted. The secrets stay enumerable, so `{ ...options }` copies
 * still hold them; the hooks, being non-enumerable, are not copied.
 *
 * @param visible Every option but the secrets.
 * @param apiKey The API key, if any.
 * @param token The server's bearer token, if any.
 * @returns The frozen options.
 *
 * @example Printing never shows the key
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveOptions } from "./config.ts";
 * import { sealOptions } from "./redact.ts";
 *
 * const { apiKey: _, token: __, ...visible } = resolveOptions({
 *   flags: { model: "m" },
 *   positionals: ["in.jsonl"],
 *   env: {},
 * });
 * const options = sealOptions(visible, "sk-secret", undefined);
 * assert.equal(options.apiKey, "sk-secret");
 * assert.ok(!JSON.stringify(options).includes("sk-secret"));
 * assert.ok(!Deno.inspect(options).includes("sk-secret"));
 * assert.ok(Object.isFrozen(options));
 * ```
 */
export function sealOptions(
  visible: Omit<Options, "apiKey" | "token">,
  apiKey: string | undefined,
  token: string | undefined,
): Options {
  const options: Options = { ...visible, apiKey, token };
  Object.defineProperties(options, {
    toJSON: { value: redactedJson },
    [Symbol.for("Deno.customInspect")]: { value: denoInspect },
    [Symbol.for("nodejs.util.inspect.custom")]: { value: nodeInspect },
  });
  return Object.freeze(options);
}

function redactedJson(this: Options): RedactedOptions {
  return redactOptions(this);
}

function denoInspect(
  this: Options,
  inspect: (value: unknown, options: unknown) => string,
  inspectOptions: unknown,
): string {
  return inspect(redactOptions(this), inspectOptions);
}

function nodeInspect(
  this: Options,
  _depth: number,
  inspectOptions: unknown,
  inspect: (value: unknown, options: unknown) => string,
): string {
  return inspect(redactOptions(this), inspectOptions);
}
