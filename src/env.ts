/**
 * Read-only access to environment variables that works under a narrow `--allow-env=A,B`:
 * each variable is read on first use, and one the process may not read counts as unset.
 *
 * @module
 */

/**
 * Returns a view of the environment whose properties are read lazily with `Deno.env.get`.
 * It cannot be enumerated, so nothing can dump the whole environment (and its secrets) by mistake.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { lazyEnv } from "./env.ts";
 * Deno.env.set("COTFIT_EXAMPLE", "yes");
 * assert.equal(lazyEnv().COTFIT_EXAMPLE, "yes");
 * assert.deepEqual(Object.keys(lazyEnv()), []);
 * ```
 *
 * @param onDenied Called once per variable the process may not read.
 * @returns The environment as a read-only record.
 */
export function lazyEnv(onDenied?: (name: string) => void): Readonly<Record<string, string>> {
  const denied = new Set<string>();
  return new Proxy({}, {
    get(_target, name) {
      if (typeof name !== "string") return undefined;
      try {
        return Deno.env.get(name);
      } catch (error) {
        if (
          error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
        ) {
          if (!denied.has(name)) {
            denied.add(name);
            onDenied?.(name);
          }
          return undefined;
        }
        throw error;
      }
    },
  });
}
