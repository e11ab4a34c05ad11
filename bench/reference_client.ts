#!/usr/bin/env -S deno run --no-prompt --allow-net=127.0.0.1
/**
 * The bench's HTTP-only reference client: it sends `--count` chat requests of about
 * `--body-bytes` each through cotfit's own HTTP/1.1 pool (`src/http1.ts`), `--concurrency` at a
 * time, parses each reply's JSON and does nothing else: no records, prompts, cache or output.
 * Against the same fake on the same machine, its rate is the ceiling any client in one Deno
 * thread reaches there, so the efficiency scenario can tell cotfit's own cost from the machine's.
 *
 * Prints one JSON line: `{"calls": N, "wallMs": T}`, timed from the first request to the last
 * reply (Deno start-up excluded, as in cotfit's `usage.json`).
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 bench/reference_client.ts --url http://127.0.0.1:PORT/v1 \
 *   --concurrency 1024 --count 60000 --body-bytes 7000
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createHttp1Pool } from "../src/http1.ts";

/** What one reference run measured. */
export interface ReferenceTiming {
  readonly calls: number;
  readonly wallMs: number;
}

/**
 * Sends `count` requests, `concurrency` at a time, and times them.
 *
 * @param baseURL The endpoint's base URL, ending in `/v1`.
 * @param concurrency Requests in flight at once.
 * @param count Requests in all.
 * @param bodyBytes About how large each request body is.
 * @returns The calls made and the time they took.
 */
export async function runReference(
  baseURL: string,
  concurrency: number,
  count: number,
  bodyBytes: number,
): Promise<ReferenceTiming> {
  const url = new URL(`${baseURL.replace(/\/$/, "")}/chat/completions`);
  using pool = createHttp1Pool(url);
  const headers = { "content-type": "application/json", accept: "application/json" };
  const filler = "x".repeat(Math.max(0, bodyBytes - 120));
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      const id = next++;
      const body = JSON.stringify({
        model: "bench",
        messages: [{ role: "user", content: `Request ${id}. ${filler}` }],
      });
      const response = await pool.post(url.pathname, headers, body, undefined);
      if (response.status !== 200) throw new Error(`Request ${id} got HTTP ${response.status}`);
      JSON.parse(response.body);
    }
  }));
  return { calls: count, wallMs: performance.now() - started };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    strict: true,
    options: {
      url: { type: "string" },
      concurrency: { type: "string" },
      count: { type: "string" },
      "body-bytes": { type: "string", default: "7000" },
    },
  });
  const numbers = [values.concurrency, values.count, values["body-bytes"]].map(Number);
  if (!values.url || numbers.some((n) => !Number.isInteger(n) || n < 1)) {
    console.error(
      "Usage: reference_client.ts --url URL --concurrency N --count N [--body-bytes N]",
    );
    Deno.exit(2);
  }
  const [concurrency, count, bodyBytes] = numbers;
  console.log(JSON.stringify(await runReference(values.url, concurrency, count, bodyBytes)));
}
