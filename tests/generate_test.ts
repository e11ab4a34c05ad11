import assert from "node:assert/strict";
import { memoryCache } from "../src/cache.ts";
import {
  createThoughtWriter,
  type ThoughtWriter,
  type ThoughtWriterOptions,
} from "../src/generate.ts";
import { type ChatClient, type ChatReply, createChatClient } from "../src/llm.ts";
import { createLimiter } from "../src/pool.ts";
import { loadPrompt } from "../src/prompt.ts";
import { singleTurnRequest } from "./cli_helpers.ts";

/** A successful reply carrying `content`. */
function replyOf(content: string): ChatReply {
  return {
    content,
    finishReason: "stop",
    usage: { inputTokens: 1, outputTokens: 1, estimated: false },
    latencyMs: 1,
    raw: null,
  };
}

/** A client that always replies with `content`. */
function replying(content: string): ChatClient {
  return {
    complete: () => Promise.resolve(replyOf(content)),
    close() {},
    [Symbol.dispose]() {},
  };
}

/** A thought writer over `client` with the default prompt, no retries and an in-memory cache. */
async function writerFor(
  client: ChatClient,
  options: Partial<ThoughtWriterOptions> = {},
): Promise<ThoughtWriter> {
  return createThoughtWriter({
    template: await loadPrompt(),
    promptId: "test",
    client,
    model: "m",
    retries: 0,
    limiter: createLimiter(1),
    cache: memoryCache(),
    ...options,
  });
}

const REQUEST = singleTurnRequest("Why is the sky blue?", "Rayleigh scattering.");

async function writeWith(content: string, maxThoughtTokens: number) {
  const writeThought = await writerFor(replying(content), { maxThoughtTokens });
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

/** A client answering each call with the next of `contents`, the last one over and over. */
function replyingInTurn(contents: readonly string[]): ChatClient & { calls: () => number } {
  let calls = 0;
  return {
    complete: () => Promise.resolve(replyOf(contents[Math.min(calls++, contents.length - 1)])),
    calls: () => calls,
    close() {},
    [Symbol.dispose]() {},
  };
}

Deno.test("createThoughtWriter() retries a thought that holds a line of the framing", async () => {
  const framing = { preface: "Thought Process:", suffix: "\nAnswer:" };
  const client = replyingInTurn([
    "<thought_process>\nIt scatters.\n\nAnswer:\nSomething else.\n</thought_process>",
    "<thought_process>\nShort wavelengths scatter more.\n</thought_process>",
  ]);
  const writeThought = await writerFor(client, { retries: 1 });
  const expected = { ok: true, thought: "Short wavelengths scatter more." };
  assert.deepEqual(await writeThought(REQUEST, { line: 1, framing }), expected);
  assert.equal(client.calls(), 2);
  // The same thought is fine for a framing it does not hold, and for this one, from the cache.
  assert.deepEqual(await writeThought(REQUEST, { line: 2, framing }), expected);
  assert.equal(client.calls(), 2);
});

Deno.test("createThoughtWriter() generates again a cached thought that holds a line of this framing", async () => {
  const client = replyingInTurn([
    "<thought_process>\nScattering.\nResult:\nblue\n</thought_process>",
    "<thought_process>\nScattering favours blue.\n</thought_process>",
  ]);
  const writeThought = await writerFor(client);
  const plain = { preface: "Thought Process:", suffix: "\nAnswer:" };
  const result = { preface: "Reasoning:", suffix: "Result:" };
  assert.deepEqual(await writeThought(REQUEST, { line: 1, framing: plain }), {
    ok: true,
    thought: "Scattering.\nResult:\nblue",
  });
  assert.deepEqual(await writeThought(REQUEST, { line: 1, framing: result }), {
    ok: true,
    thought: "Scattering favours blue.",
  });
  assert.equal(client.calls(), 2);
});

/** A client whose calls wait until released, answering with the number of the call. */
function gated() {
  let calls = 0;
  const pending: (() => void)[] = [];
  const client: ChatClient = {
    complete(_messages, options) {
      const n = ++calls;
      return new Promise((resolve, reject) => {
        options?.signal?.addEventListener("abort", () => reject(options.signal!.reason));
        pending.push(() =>
          resolve(replyOf(`<thought_process>\nThought from call ${n}.\n</thought_process>`))
        );
      });
    },
    close() {},
    [Symbol.dispose]() {},
  };
  const releaseAll = () => pending.splice(0).forEach((release) => release());
  return { client, releaseAll, calls: () => calls };
}

async function gatedWriter() {
  const gate = gated();
  let dedupes = 0;
  const writeThought = await writerFor(gate.client, {
    limiter: createLimiter(4),
    events: { onDedupe: () => dedupes++ },
  });
  return { writeThought, gate, dedupes: () => dedupes };
}

Deno.test("createThoughtWriter() makes one call for identical turns asked while it runs", async () => {
  const { writeThought, gate, dedupes } = await gatedWriter();
  const first = writeThought(REQUEST, { line: 1 });
  const second = writeThought(REQUEST, { line: 2 });
  await new Promise((resolve) => setTimeout(resolve, 10));
  gate.releaseAll();
  const expected = { ok: true, thought: "Thought from call 1." };
  assert.deepEqual(await first, expected);
  assert.deepEqual(await second, expected);
  assert.equal(gate.calls(), 1);
  assert.equal(dedupes(), 1);
  // Finished, it is served from the cache: no call, no dedupe.
  assert.deepEqual(await writeThought(REQUEST, { line: 3 }), expected);
  assert.equal(gate.calls(), 1);
});

Deno.test("createThoughtWriter() still answers a turn whose identical twin's asker went away", async () => {
  const { writeThought, gate } = await gatedWriter();
  const leaving = new AbortController();
  const first = writeThought(REQUEST, { line: 1, signal: leaving.signal });
  const second = writeThought(REQUEST, { line: 2 });
  await new Promise((resolve) => setTimeout(resolve, 10));
  leaving.abort(new Error("client went away"));
  await assert.rejects(first, /client went away/);
  // The second asker starts its own call; a third joins that one, not the aborted one.
  await new Promise((resolve) => setTimeout(resolve, 10));
  const third = writeThought(REQUEST, { line: 3 });
  await new Promise((resolve) => setTimeout(resolve, 10));
  gate.releaseAll();
  const expected = { ok: true, thought: "Thought from call 2." };
  assert.deepEqual(await second, expected);
  assert.deepEqual(await third, expected);
  assert.equal(gate.calls(), 2);
});

Deno.test("createThoughtWriter() gives up a record at once when its reply is over the cap", async () => {
  let requests = 0;
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    requests++;
    return new Response("x".repeat(100_000), { headers: { "content-type": "application/json" } });
  });
  for (const transport of ["pooled", "fetch"] as const) {
    requests = 0;
    using client = createChatClient({
      baseURL: `http://127.0.0.1:${server.addr.port}/v1`,
      apiKey: "",
      model: "m",
      timeoutMs: 5_000,
      transport,
      maxResponseBytes: 64 * 1024,
    });
    const writeThought = await writerFor(client, { retries: 3, retryBaseMs: 1 });
    assert.deepEqual(await writeThought(REQUEST, { line: 1 }), {
      ok: false,
      reason: "upstream reply over 65536 bytes, cotfit's cap on one reply: not read further",
    });
    assert.equal(requests, 1, transport);
  }
});
