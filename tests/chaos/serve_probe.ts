/**
 * `cotfit serve` exactly as `server.ts` runs it, plus a memory probe for the chaos suite: on
 * SIGUSR1 it runs a full garbage collection and prints
 * `probe heap_used_kib=N external_kib=N` on stderr, so the suite can tell live memory from
 * heap the allocator has not handed back yet.
 *
 * ```sh
 * deno run --v8-flags=--expose-gc --allow-read --allow-write --allow-net --allow-env \
 *   tests/chaos/serve_probe.ts --port 0 --base-url URL --model m --insecure-no-auth
 * ```
 *
 * Requires `--v8-flags=--expose-gc`, and the permissions of `cotfit serve`.
 *
 * @module
 */

import { main } from "../../main.ts";

/** Prints the probe line after a full collection; without `--expose-gc` it says so. */
function probe(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) {
    console.error("probe unavailable: run with --v8-flags=--expose-gc");
    return;
  }
  gc();
  const { heapUsed, external } = Deno.memoryUsage();
  console.error(
    `probe heap_used_kib=${Math.round(heapUsed / 1024)} external_kib=${
      Math.round(external / 1024)
    }`,
  );
}

if (import.meta.main) {
  Deno.addSignalListener("SIGUSR1", probe);
  Deno.exit(await main(["serve", ...Deno.args]));
}
