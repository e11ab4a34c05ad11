import assert from "node:assert/strict";
import { loadTokenizer } from "../src/tokenizer.ts";
import { parseRecord } from "../src/records.ts";
import { historyNeedsTokenCount, planTurns } from "../src/turns.ts";
import type { Conversation, Role, Turn } from "../src/types.ts";

function conversation(turns: [Role, string | null][], system: string | null = null): Conversation {
  return {
    line: 1,
    shape: "sharegpt",
    listKey: "conversations",
    record: {},
    system,
    turns: turns.map(([role, text], index): Turn => ({ index, role, name: role, text })),
  };
}

Deno.test("planTurns() gives every answered assistant turn of a multi-turn chat its context", () => {
  const plan = planTurns(conversation([
    ["system", "Be brief."],
    ["user", "Q1"],
    ["assistant", "A1"],
    ["user", "Q2"],
    ["assistant", "A2"],
  ]));
  assert.equal(plan.length, 2);
  assert.equal(plan[0].system, "Be brief.");
  assert.deepEqual(plan[0].history, []);
  assert.equal(plan[0].request.text, "Q1");
  assert.equal(plan[0].answer, "A1");
  assert.equal(plan[1].turnIndex, 4);
  assert.deepEqual(plan[1].history.map((t) => t.text), ["Q1", "A1"]);
  assert.equal(plan[1].request.text, "Q2");
});

Deno.test("planTurns() joins a top-level system field and leading system turns", () => {
  const plan = planTurns(
    conversation([["system", "Second."], ["user", "Q"], ["assistant", "A"]], "First."),
  );
  assert.equal(plan[0].system, "First.\n\nSecond.");
  assert.equal(planTurns(conversation([["user", "Q"], ["assistant", "A"]]))[0].system, null);
});

Deno.test("planTurns() passes greetings, empty answers and tool calls through", () => {
  const plan = planTurns(conversation([
    ["assistant", "Hello! How can I help?"],
    ["user", "Weather in Paris?"],
    ["assistant", null],
    ["tool", '{"rain": true}'],
    ["assistant", "  "],
    ["assistant", "Take an umbrella."],
    ["user", "Thanks"],
  ]));
  assert.deepEqual(plan.map((r) => r.turnIndex), [5]);
  assert.deepEqual(plan[0].between.map((t) => t.index), [2, 3, 4]);
  assert.deepEqual(plan[0].history.map((t) => t.text), ["Hello! How can I help?"]);
});

Deno.test("planTurns() answers the latest of two user turns and keeps mid-chat system turns in history", () => {
  const plan = planTurns(conversation([
    ["user", "First"],
    ["system", "Switch to French."],
    ["user", "Second"],
    ["assistant", "Deuxième"],
    ["assistant", "Encore"],
  ]));
  assert.deepEqual(plan.map((r) => r.request.text), ["Second", "Second"]);
  assert.deepEqual(plan[0].history.map((t) => t.role), ["user", "system"]);
  assert.deepEqual(plan[1].between.map((t) => t.text), ["Deuxième"]);
});

Deno.test("planTurns() returns nothing when no assistant turn answers a user turn", () => {
  assert.deepEqual(planTurns(conversation([["assistant", "Hi"], ["user", "Q"]])), []);
  assert.deepEqual(planTurns(conversation([["user", "Q"], ["assistant", ""]])), []);
});

Deno.test("planTurns() drops the oldest history turns first to fit the budget", () => {
  const long = "x".repeat(400);
  const turns: [Role, string][] = [];
  for (let i = 0; i < 5; i++) turns.push(["user", `${i}${long}`], ["assistant", `${i}${long}`]);
  turns.push(["user", "last"], ["assistant", "answer"]);
  // One token per character, so each history turn costs 401 + 4 tokens.
  const plan = planTurns(conversation(turns), {
    historyTokens: 1000,
    countTokens: (t) => t.length,
  });
  const last = plan.at(-1)!;
  assert.equal(last.history.length, 2);
  assert.equal(last.droppedTurns, 8);
  assert.deepEqual(last.history.map((t) => t.index), [8, 9]);
  assert.equal(plan[0].droppedTurns, 0);
});

Deno.test("planTurns() counts a turn's tool calls against the budget, as the prompt shows them", () => {
  const turns: Turn[] = [];
  for (let i = 0; i < 4; i++) {
    turns.push(
      { index: turns.length, role: "user", name: "user", text: `step ${i}` },
      {
        index: turns.length,
        role: "assistant",
        name: "assistant",
        text: null,
        calls: `f(${"a".repeat(450)})`,
      },
      { index: turns.length, role: "tool", name: "tool", text: "ok" },
    );
  }
  turns.push(
    { index: turns.length, role: "user", name: "user", text: "done?" },
    { index: turns.length, role: "assistant", name: "assistant", text: "Done." },
  );
  const [plan] = planTurns({ ...conversation([]), turns }, {
    historyTokens: 1000,
    countTokens: (t) => t.length,
  });
  // Each call turn shows ~453 characters: two of them fit in 1,000 tokens, four would not.
  assert.ok(plan.droppedTurns > 0, "the oldest call turns are dropped");
  const shown = plan.history.reduce(
    (sum, turn) => sum + (turn.text ?? "").length + (turn.calls ?? "").length,
    0,
  );
  assert.ok(shown <= 1000, `${shown} characters of history kept`);
});

Deno.test("planTurns() skips the tokenizer when the history obviously fits", () => {
  let calls = 0;
  planTurns(
    conversation([["user", "Q1"], ["assistant", "A1"], ["user", "Q2"], ["assistant", "A2"]]),
    {
      countTokens: (t) => {
        calls++;
        return t.length;
      },
    },
  );
  assert.equal(calls, 0);
});

Deno.test("planTurns() trims a long history by exact o200k counts", async () => {
  const { countTokens } = await loadTokenizer();
  // "hello " x 99 is 100 tokens, so each history turn costs 104 with its framing.
  const long = "hello ".repeat(99);
  assert.equal(countTokens(long), 100);
  const turns: [Role, string][] = [];
  for (let i = 0; i < 4; i++) turns.push(["user", long], ["assistant", long]);
  turns.push(["user", "last"], ["assistant", "answer"]);
  const chat = conversation(turns);
  for (const [historyTokens, kept] of [[207, 1], [208, 2], [415, 3], [416, 4], [832, 8]]) {
    assert.equal(historyNeedsTokenCount(chat, { historyTokens }), true);
    const last = planTurns(chat, { historyTokens, countTokens }).at(-1)!;
    assert.equal(last.history.length, kept, `budget ${historyTokens}`);
    assert.equal(last.droppedTurns, 8 - kept);
  }
});

Deno.test("planTurns() skips the tokenizer for mostly-ASCII history that fits by UTF-8 size", () => {
  // 2 x 1,200 characters with dashes and quotes: 2,888 bytes with framing, within 3,000 tokens.
  const prose = "It’s fine — really. ".repeat(60);
  const chat = conversation([
    ["user", prose],
    ["assistant", prose],
    ["user", "More?"],
    ["assistant", "Yes."],
  ]);
  let calls = 0;
  const plan = planTurns(chat, {
    countTokens: () => {
      calls++;
      return 0;
    },
  });
  assert.equal(calls, 0);
  assert.equal(plan[1].history.length, 2);
  assert.equal(historyNeedsTokenCount(chat), false);
});

Deno.test("historyNeedsTokenCount() is true exactly when planTurns() counts tokens", () => {
  const long = "x".repeat(500);
  const chats = [
    conversation([["user", "Q"], ["assistant", "A"]]),
    conversation([["user", long], ["assistant", long], ["user", "Q"], ["assistant", "A"]]),
    // The last user turn answers nothing: its history is never planned.
    conversation([["user", long], ["assistant", "A"], ["user", long], ["user", long]]),
    // Leading system turns are the system prompt, not history.
    conversation([["system", long], ["system", long], ["user", "Q"], ["assistant", "A"]]),
    conversation([["user", "日本語".repeat(100)], ["assistant", "A"], ["user", "Q"], [
      "assistant",
      "A",
    ]]),
    conversation([["user", long], ["assistant", null], ["user", "Q"], ["assistant", " "]]),
  ];
  for (const [i, chat] of chats.entries()) {
    for (const historyTokens of [0, 100, 503, 504, 505, 1000, 3000]) {
      let counted = false;
      planTurns(chat, {
        historyTokens,
        countTokens: (text) => {
          counted = true;
          return text.length;
        },
      });
      assert.equal(
        historyNeedsTokenCount(chat, { historyTokens }),
        counted,
        `${i} @ ${historyTokens}`,
      );
    }
  }
});

Deno.test("planTurns() lets the counter stop once a history turn is over the budget", () => {
  const chat = conversation([
    ["user", "x".repeat(1 << 20)],
    ["assistant", "Noted."],
    ["user", "Its length?"],
    ["assistant", "1 MiB."],
  ]);
  const counted: [string, number][] = [];
  const plan = planTurns(chat, {
    historyTokens: 3000,
    countTokens: (text, limit) => {
      counted.push([text.slice(0, 8), limit]);
      return Math.min(text.length, limit + 1);
    },
  });
  // Newest first, each allowed the budget less its framing.
  assert.deepEqual(counted, [["Noted.", 2996], ["xxxxxxxx", 2996]]);
  assert.deepEqual(plan[1].history.map((turn) => turn.text), ["Noted."]);
  assert.equal(plan[1].droppedTurns, 1);
});

Deno.test("planTurns() gives a turn marked weight 0 a thought too, so context turns share the format", () => {
  const plan = planTurns(parseRecord(
    '{"conversations":[{"from":"human","value":"Q1","weight":0},' +
      '{"from":"gpt","value":"A1","weight":0},{"from":"human","value":"Q2","weight":0},' +
      '{"from":"gpt","value":"A2","weight":1}]}',
    1,
  ));
  assert.deepEqual(plan.map((request) => [request.turnIndex, request.answer]), [
    [1, "A1"],
    [3, "A2"],
  ]);
});
