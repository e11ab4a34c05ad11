import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveOptions } from "../src/config.ts";
import { createEngine } from "../src/engine.ts";
import { EXIT } from "../src/run.ts";
import type { ThoughtRequest } from "../src/types.ts";
import { convertInProcess, singleTurnRequest } from "./cli_helpers.ts";

const REPLY = "<thought_process>\nI recall the fact — and check it twice.\n</thought_process>";

interface NoUsageServer extends AsyncDisposable {
  readonly url: string;
  /** The messages of every chat request, in arrival order. */
  readonly requests: { content: string }[][];
}

/** An OpenAI-compatible endpoint that, like some local servers, never reports `usage`. */
function startNoUsageServer(): NoUsageServer {
  const requests: { content: string }[][] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const body = await request.json();
    requests.push(body.messages);
    return Response.json({
      id: `chatcmpl-${requests.length}`,
      object: "chat.completion",
      created: 0,
      model: body.model,
      choices: [{
        index: 0,
        message: { role: "assistant", content: REPLY },
        finish_reason: "stop",
      }],
    });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/v1`,
    requests,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/**
 * What OpenAI bills for the requests and replies, counted with o200k directly. Loaded only here,
 * after the engine is done: the engine must load the tokenizer itself, and wait for it.
 */
async function billedTokens(
  requests: { content: string }[][],
): Promise<{ input: number; output: number }> {
  const { countTokens } = await import("gpt-tokenizer");
  let input = 0;
  for (const messages of requests) {
    // 3 tokens prime the reply; each message is its text plus 4 of framing.
    input += messages.reduce((sum, message) => sum + 4 + countTokens(message.content), 3);
  }
  return { input, output: requests.length * countTokens(REPLY) };
}

function request(question: string): ThoughtRequest {
  return singleTurnRequest(question, "An answer.");
}

Deno.test("createEngine() counts calls without usage exactly by the time it closes", async () => {
  await using server = startNoUsageServer();
  const options = resolveOptions({
    flags: { model: "m", "base-url": server.url },
    positionals: ["serve"],
    env: {},
  });
  const engine = await createEngine(options, { cachePath: null, now: () => 0 });
  const questions = ["Capital of France?", "Capital of Spain?", "Capital of Italy?"];
  const outcomes = await Promise.all(
    questions.map((question) => engine.writeThought(request(question), { line: 1 })),
  );
  assert.ok(outcomes.every((outcome) => outcome.ok));
  await engine.close();
  const snapshot = engine.meter.snapshot(0);
  const billed = await billedTokens(server.requests);
  assert.equal(snapshot.calls, 3);
  assert.equal(snapshot.estimatedCalls, 3);
  assert.equal(snapshot.inputTokens, billed.input);
  assert.equal(snapshot.outputTokens, billed.output);
});

Deno.test("runConversion() writes exact o200k counts to usage.json when the server sends no usage", async () => {
  await using server = startNoUsageServer();
  const dir = await Deno.makeTempDir({ prefix: "cotfit-engine-" });
  try {
    const input = join(dir, "chats.jsonl");
    const records = ["Name a prime.", "Name a colour.", "Name a planet."].map((question) =>
      JSON.stringify({
        conversations: [{ from: "human", value: question }, { from: "gpt", value: "Done." }],
      })
    );
    await Deno.writeTextFile(input, records.join("\n") + "\n");
    const code = await convertInProcess(input, join(dir, "out"), server.url);
    assert.equal(code, EXIT.ok);
    const usage = JSON.parse(await Deno.readTextFile(join(dir, "out", "usage.json")));
    const billed = await billedTokens(server.requests);
    assert.equal(usage.calls, 3);
    assert.equal(usage.estimatedCalls, 3);
    assert.equal(usage.inputTokens, billed.input);
    assert.equal(usage.outputTokens, billed.output);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
