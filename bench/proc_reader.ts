#!/usr/bin/env -S deno run --no-prompt --allow-all
/**
 * Reads `/proc` files for the benchmark suite: one path per stdin line, one JSON line back
 * (the file's text, or `null` when it cannot be read), in order.
 *
 * It is its own process because Deno 2 reads `/proc` only with `--allow-all`, not with
 * `--allow-read=/proc`; the suite itself keeps its narrower permissions and spawns this with
 * `--allow-all`. It refuses every path outside `/proc/`.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Answers path requests from `input` on `output` until `input` ends.
 *
 * @param input Newline-separated paths.
 * @param output JSON lines: the text, or `null`.
 */
export async function serveProcReads(
  input: ReadableStream<Uint8Array>,
  output: WritableStream<Uint8Array>,
): Promise<void> {
  const writer = output.getWriter();
  let pending = "";
  for await (const chunk of input.pipeThrough(new TextDecoderStream())) {
    const lines = (pending + chunk).split("\n");
    pending = lines.pop() ?? "";
    let reply = "";
    for (const path of lines) reply += JSON.stringify(readProcFile(path)) + "\n";
    if (reply !== "") await writer.write(encoder.encode(reply));
  }
  await writer.close();
}

function readProcFile(path: string): string | null {
  if (!path.startsWith("/proc/") || path.includes("..")) return null;
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

if (import.meta.main) await serveProcReads(Deno.stdin.readable, Deno.stdout.writable);
