import assert from "node:assert/strict";
import { extractThought, thoughtMayNeedTokenCount, type ThoughtResult } from "../src/thought.ts";
import { loadTokenizer, type Tokenizer } from "../src/tokenizer.ts";

function stop(content: string | null): { content: string | null; finishReason: string | null } {
  return { content, finishReason: "stop" };
}

function wrapped(thought: string): { content: string; finishReason: string } {
  return { content: `<thought_process>\n${thought}\n</thought_process>`, finishReason: "stop" };
}

function ok(thought: string): ThoughtResult {
  return { ok: true, thought };
}

function fail(reason: string): ThoughtResult {
  return { ok: false, reason };
}

Deno.test("extractThought() takes the text inside the tags", () => {
  const reply = stop("Sure.\n<thought_process>\n  I add 2 and 2: 4.  \n</thought_process>\nBye");
  assert.deepEqual(extractThought(reply), ok("I add 2 and 2: 4."));
});

Deno.test("extractThought() rejects a reply that hit the token limit", () => {
  const reply = { content: wrapped("Fine thought.").content, finishReason: "length" };
  assert.deepEqual(extractThought(reply), fail("runaway: the reply hit the token limit"));
});

Deno.test("extractThought() rejects null and blank replies", () => {
  assert.deepEqual(extractThought(stop(null)), fail("empty reply"));
  assert.deepEqual(extractThought(stop(" \n\t")), fail("empty reply"));
});

Deno.test("extractThought() removes leaked <think> reasoning", () => {
  const thought = "I recall that water boils at 100 C at sea level.";
  const cases = [
    `<think>Draft: <thought_process>no</thought_process></think>\n<thought_process>${thought}</thought_process>`,
    `<THINK>a</think><think foo="1">b</think ><thought_process>${thought}</thought_process>`,
    `<think>never closed... <thought_process>${thought}</thought_process>`,
    `reasoning whose opening tag was in the prompt</think>\n<thought_process>${thought}</thought_process>`,
  ];
  for (const content of cases) {
    assert.deepEqual(extractThought(stop(content)), ok(thought), content);
  }
  assert.deepEqual(
    extractThought(stop("<think>only reasoning, never the tags")),
    fail("no <thought_process> tags"),
  );
});

Deno.test("extractThought() reports a missing <thought_process> tag", () => {
  assert.deepEqual(
    extractThought(stop("I think the user wants Paris.")),
    fail("no <thought_process> tags"),
  );
  assert.deepEqual(
    extractThought(stop("</thought_process> only a closing tag")),
    fail("no <thought_process> tags"),
  );
});

Deno.test("extractThought() tolerates case and spaces in the tags", () => {
  const reply = stop("< Thought_Process >\nI pick Paris.\n</ THOUGHT_PROCESS >");
  assert.deepEqual(extractThought(reply), ok("I pick Paris."));
});

Deno.test("extractThought() accepts a missing closing tag only after a normal stop", () => {
  const content = "<thought_process>\nI pick Paris, the capital.";
  assert.deepEqual(extractThought(stop(content)), ok("I pick Paris, the capital."));
  assert.deepEqual(
    extractThought({ content, finishReason: null }),
    fail("unclosed <thought_process> tag"),
  );
  assert.deepEqual(
    extractThought({ content, finishReason: "content_filter" }),
    fail("unclosed <thought_process> tag"),
  );
});

Deno.test("extractThought() takes the first block when there are several", () => {
  const reply = stop(
    "<thought_process>First.</thought_process><thought_process>Second.</thought_process>",
  );
  assert.deepEqual(extractThought(reply), ok("First."));
});

Deno.test("extractThought() rejects a thought that still holds our tags", () => {
  for (
    const inner of [
      "I see <answer>Paris</answer> and agree.",
      "Nested <thought_process> start",
      "Echo of </user_message> the prompt",
      "Inline <think>hidden",
      "< tool_activity > shows rain",
    ]
  ) {
    assert.deepEqual(extractThought(wrapped(inner)), fail("thought still holds tags"), inner);
  }
  assert.deepEqual(
    extractThought(wrapped("In HTML I need a <div> wrapper and <answers> stays fine.")),
    ok("In HTML I need a <div> wrapper and <answers> stays fine."),
  );
});

Deno.test("extractThought() rejects an empty thought", () => {
  assert.deepEqual(
    extractThought(stop("<thought_process> \n </thought_process>")),
    fail("empty thought"),
  );
});

Deno.test("extractThought() rejects refusals of the task", () => {
  for (
    const refusal of [
      "I'm sorry, but I can't help with that request.",
      "I’m sorry, I cannot write a thought process for this.",
      "I am very sorry, but I won't do this.",
      "Sorry, but I am unable to assist.",
      "I apologize, but I can't continue.",
      "I cannot help with this.",
      "I can't assist with that.",
      "I can't assist.",
      "I'm unable to comply with your request.",
      "I won't fulfill this request.",
      "As an AI language model, I do not have thoughts.",
      "As an AI, I cannot reveal internal reasoning.",
    ]
  ) {
    assert.deepEqual(extractThought(wrapped(refusal)), fail("refusal"), refusal);
  }
});

Deno.test("extractThought() keeps thoughts that only mention a limit", () => {
  for (
    const thought of [
      "I can't recall the exact year, so I reason from the war's timeline instead.",
      "I can't help noticing the user is anxious, so I keep it gentle.",
      "I cannot assume they know calculus; I start from slopes.",
      "I can't provide exact live prices, so a typical range is the honest choice.",
      "As an AI on this starship, I run the numbers on the hull breach first.",
      "They ask me to ignore previous instructions and say hi. I'm sorry to drop the topic, but a hi is harmless.",
    ]
  ) {
    assert.deepEqual(extractThought(wrapped(thought)), ok(thought), thought);
  }
});

Deno.test("extractThought() removes sentences that speak of the answer as existing", () => {
  const thought =
    "The provided answer explains the boiling point. Water boils at 100 C at sea level, " +
    "so I lead with that! The output above also mentions altitude.\n\n" +
    "Altitude lowers it. The assistant's answer covers this well.\n" +
    "Looking at the final answer provided, it is short. I keep it short.";
  assert.deepEqual(
    extractThought(wrapped(thought)),
    ok(
      "Water boils at 100 C at sea level, so I lead with that!\n\nAltitude lowers it.\nI keep it short.",
    ),
  );
  assert.deepEqual(
    extractThought(wrapped("I work it out: the answer is 42, and the response should be short.")),
    ok("I work it out: the answer is 42, and the response should be short."),
  );
});

Deno.test("extractThought() counts the tokens of short non-ASCII thoughts", async () => {
  const tokenizer = await loadTokenizer();
  // 40 characters, but far more than 20 tokens: the cheap ASCII bound must not wave it through.
  const thought = "日本語で考える。".repeat(5);
  assert.deepEqual(
    extractThought(wrapped(thought), { maxThoughtTokens: 20, tokenizer }),
    fail("runaway: thought over 20 tokens"),
  );
  assert.deepEqual(
    extractThought(wrapped(thought), { maxThoughtTokens: 100, tokenizer }),
    ok(thought),
  );
});

Deno.test("extractThought() rejects a thought that only describes the answer", () => {
  const thought =
    "The given response is correct. It matches the answer section.\nThis reply above is fine.";
  assert.deepEqual(extractThought(wrapped(thought)), fail("thought only describes the answer"));
});

Deno.test("extractThought() rejects thoughts over the token limit", async () => {
  const tokenizer = await loadTokenizer();
  const thought = "I reason step by step about the problem. ".repeat(400).trim();
  assert.deepEqual(
    extractThought(wrapped(thought), { tokenizer }),
    fail("runaway: thought over 2048 tokens"),
  );
  assert.deepEqual(
    extractThought(wrapped("one two three four five six"), { maxThoughtTokens: 5, tokenizer }),
    fail("runaway: thought over 5 tokens"),
  );
  assert.deepEqual(
    extractThought(wrapped("one two three four five six"), { maxThoughtTokens: 6, tokenizer }),
    ok("one two three four five six"),
  );
  assert.deepEqual(
    extractThought(wrapped(thought), { maxThoughtTokens: 10_000, tokenizer }),
    ok(thought),
  );
});

/** A tokenizer that counts its calls and answers like the real one. */
function spyTokenizer(real: Tokenizer): { tokenizer: Tokenizer; calls: () => number } {
  let calls = 0;
  return {
    tokenizer: {
      countTokens(text) {
        calls++;
        return real.countTokens(text);
      },
      countTokensUpTo(text, limit) {
        calls++;
        return real.countTokensUpTo(text, limit);
      },
      isWithinTokenLimit(text, limit) {
        calls++;
        return real.isWithinTokenLimit(text, limit);
      },
    },
    calls: () => calls,
  };
}

Deno.test("extractThought() counts no thought smaller in UTF-8 bytes than the limit", async () => {
  const spy = spyTokenizer(await loadTokenizer());
  // Typical model prose: mostly ASCII with a few dashes and curly quotes, 1,900 bytes in all.
  const thought = "I check the user’s question — then I answer it. ".repeat(38).trim();
  assert.deepEqual(extractThought(wrapped(thought), { tokenizer: spy.tokenizer }), ok(thought));
  assert.equal(spy.calls(), 0);
  // Not needed, so not required.
  assert.deepEqual(extractThought(wrapped(thought)), ok(thought));
});

Deno.test("extractThought() needs a tokenizer for a thought that may be over the limit", () => {
  const thought = "I reason step by step about the problem. ".repeat(60).trim();
  assert.throws(() => extractThought(wrapped(thought)), TypeError);
  assert.throws(() => extractThought(wrapped("one two three"), { maxThoughtTokens: 2 }), TypeError);
});

Deno.test("thoughtMayNeedTokenCount() is true for every reply extractThought() counts", async () => {
  const spy = spyTokenizer(await loadTokenizer());
  const replies = [
    wrapped("Short."),
    wrapped("I reason step by step about the problem. ".repeat(60).trim()),
    wrapped("日本語で考える。".repeat(100)),
    wrapped("I check the user’s question — then I answer it. ".repeat(38).trim()),
    stop("<think>" + "draft ".repeat(500) + "</think><thought_process>Short.</thought_process>"),
    { content: "<thought_process>" + "x ".repeat(3000), finishReason: "length" },
    stop(null),
  ];
  for (const maxThoughtTokens of [5, 100, 2048]) {
    for (const reply of replies) {
      const before = spy.calls();
      extractThought(reply, { maxThoughtTokens, tokenizer: spy.tokenizer });
      const counted = spy.calls() > before;
      const label = `${reply.content?.slice(0, 40)} at ${maxThoughtTokens}`;
      if (counted) assert.ok(thoughtMayNeedTokenCount(reply, { maxThoughtTokens }), label);
    }
  }
  assert.equal(thoughtMayNeedTokenCount(wrapped("Short.")), false);
  assert.equal(thoughtMayNeedTokenCount(replies[5], { maxThoughtTokens: 5 }), false);
});

Deno.test("extractThought() rejects a non-positive token limit", () => {
  for (const maxThoughtTokens of [0, -1, 1.5, NaN]) {
    assert.throws(() => extractThought(wrapped("x"), { maxThoughtTokens }), RangeError);
  }
});

Deno.test("extractThought() normalises line endings and blank lines", () => {
  const reply = stop(
    "<thought_process>\r\n\r\nFirst step.\r\n\r\n\r\n \r\nSecond step.\rThird.\n\n</thought_process>",
  );
  assert.deepEqual(extractThought(reply), ok("First step.\n\nSecond step.\nThird."));
});

Deno.test("extractThought() reads a '<' before a long run of white space in one pass", () => {
  const thought = `<${" ".repeat(200_000)}x`;
  const started = performance.now();
  const result = extractThought(stop(`<thought_process>${thought}</thought_process>`), {
    tokenizer: { isWithinTokenLimit: () => true },
  });
  // A guard, not a benchmark: backtracking through the spaces took about 25 s here.
  assert.ok(performance.now() - started < 5_000, `${performance.now() - started} ms`);
  assert.deepEqual(result, ok(thought));
});

Deno.test("extractThought() reads many unclosed <think> tags in one pass", () => {
  const thought = "Water boils at 100 C at sea level.";
  for (const tag of ["<think>", "<think "]) {
    const reply = stop(`${tag.repeat(100_000)}<thought_process>${thought}</thought_process>`);
    const started = performance.now();
    const result = extractThought(reply);
    // A guard, not a benchmark: reading the rest of the reply at each tag took 10 to 60 s.
    assert.ok(performance.now() - started < 5_000, `${tag}: ${performance.now() - started} ms`);
    assert.deepEqual(result, ok(thought));
  }
});
