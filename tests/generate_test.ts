import assert from "node:assert/strict";
import { memoryCache } from "../src/cache.ts";
import { createThoughtWriter } from "../src/generate.ts";
import type { ChatClient } from "../src/llm.ts";
import { createLimiter } from "../src/pool.ts";
import { loadPrompt } from "../src/prompt.ts";
import { singleTurnRequest } from "./cli_helpers.ts";

/** A client that always replies with `content`. */
function replying(content: string): ChatClient {
  return {
    complete: () =>
      Promise.resolve({
        content,
        finishReason: "stop",
        usage: { inputTokens: 1, outputTokens: 1, estimated: false },
        latencyMs: 1,
        raw: null,
      }),
    close() {},
    [Symbol.dispose]() {},
  };
}

const REQUEST = singleTurnRequest("Why is the sky blue?", "Rayleigh scattering.");

async function writeWith(content: string, maxThoughtTokens: number) {
  const writeThought = createThoughtWriter({
    template: await loadPrompt(),
    promptId: "test",
    client: replying(content),
    model: "m",
    maxThoughtTokens,
    retries: 0,
    limiter: createLimiter(1),
    cache: memoryCache(),
  });
  return await writeThought(REQUEST, { line: 1 });
}

Deno.test("createThoughtWriter() rejects a thought over maxThoughtTokens as runaway", async () => {
  // 99 o200k tokens in 593 bytes: only an exact count tells it from a 98-token thought.
  const thought = "hello ".repeat(99).trim();
  const content = `<thought_process>\n${thought}\n</thought_process>`;
  assert.deepEqual(await writeWith(content, 98), {
    ok: false,
    reason: "no valid thought: runaway: thought over 98 tokens (after 1 attempt)",
  });
  assert.deepEqual(await writeWith(content, 99), { ok: true, thought });
});

Deno.test("createThoughtWriter() accepts a short thought", async () => {
  const content = "<thought_process>\nScattering favours short wavelengths.\n</thought_process>";
  assert.deepEqual(await writeWith(content, 2048), {
    ok: true,
    thought: "Scattering favours short wavelengths.",
  });
});
