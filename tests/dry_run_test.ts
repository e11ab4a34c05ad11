import assert from "node:assert/strict";
import { countTokens } from "gpt-tokenizer";
import { memoryCache } from "../src/cache.ts";
import { createDryRunWriter } from "../src/dry_run.ts";
import { loadPrompt, renderMessages } from "../src/prompt.ts";
import type { ThoughtRequest } from "../src/types.ts";
import { singleTurnRequest } from "./cli_helpers.ts";

function request(question: string): ThoughtRequest {
  return singleTurnRequest(question, "An answer of a few words.");
}

Deno.test("createDryRunWriter() counts the prompt tokens a real run would send, exactly", async () => {
  const template = await loadPrompt();
  const { writeThought, estimate } = createDryRunWriter({
    template,
    cache: memoryCache(),
    model: "m",
    promptId: "test",
    maxThoughtTokens: 2048,
  });
  const questions = ["Why is the sky blue?", "Why is the sea salty?", "Why is the sky blue?"];
  for (const question of questions) {
    assert.deepEqual(await writeThought(request(question), { line: 1 }), { ok: true, thought: "" });
  }
  // Each message is its text plus 4 tokens of framing; 3 more prime the reply.
  const billed = (question: string) =>
    renderMessages(template, request(question))
      .reduce((sum, message) => sum + 4 + countTokens(message.content), 3);
  assert.equal(estimate.turns, 3);
  assert.equal(estimate.calls, 2);
  assert.equal(estimate.duplicates, 1);
  assert.equal(estimate.inputTokens, billed(questions[0]) + billed(questions[1]));
});
