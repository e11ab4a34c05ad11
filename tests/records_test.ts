import assert from "node:assert/strict";
import {
  assembleRecord,
  composeAnswer,
  type Framing,
  hasThought,
  isTurnList,
  parseRecord,
  RecordError,
} from "../src/records.ts";
import { planTurns } from "../src/turns.ts";

const framing: Framing = { preface: "Thought Process:", suffix: "\nAnswer:" };

function assertRejects(text: string, reason: string, line = 5): void {
  assert.throws(() => parseRecord(text, line), (error: unknown) => {
    assert.ok(error instanceof RecordError, `expected a RecordError, got ${error}`);
    assert.equal(error.line, line);
    assert.equal(error.reason, reason);
    return true;
  });
}

const NO_CONVERSATION = 'no conversation: expected a "conversations", "messages" or ' +
  '"conversation" array, "prompt" and "completion" arrays, or a flat record ("instruction" with ' +
  '"output" or "response", "question" with "response" or "answer", "prompt" with "completion" or ' +
  '"response", "query" with "response" or "answer", "problem" with "solution", "inputs" with ' +
  '"targets", "input" with "output")';

function record(turns: unknown[], key = "messages"): string {
  return JSON.stringify({ [key]: turns });
}

Deno.test("RecordError is a SyntaxError carrying line and reason", () => {
  const error = new RecordError(12, "conversation has no turns");
  assert.ok(error instanceof SyntaxError);
  assert.equal(error.name, "RecordError");
  assert.equal(error.line, 12);
  assert.equal(error.reason, "conversation has no turns");
  assert.equal(error.message, "Cannot read record at line 12: conversation has no turns");
});

Deno.test("parseRecord() reads a ShareGPT record", () => {
  const text = JSON.stringify({
    id: "a-1",
    conversations: [
      { from: "system", value: "Be brief." },
      { from: "human", value: "Hi" },
      { from: "gpt", value: "Hello" },
    ],
  });
  const conversation = parseRecord(text, 3);
  assert.deepEqual(conversation, {
    line: 3,
    shape: "sharegpt",
    listKey: "conversations",
    record: JSON.parse(text),
    system: null,
    turns: [
      { index: 0, role: "system", name: "system", text: "Be brief." },
      { index: 1, role: "user", name: "human", text: "Hi" },
      { index: 2, role: "assistant", name: "gpt", text: "Hello" },
    ],
  });
});

Deno.test("parseRecord() reads an OpenAI record with tool calls", () => {
  const conversation = parseRecord(
    record([
      { role: "user", content: "Weather in Oslo?" },
      { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function" }] },
      { role: "tool", tool_call_id: "c1", content: "3 °C" },
      { role: "assistant", content: "It is 3 °C." },
    ]),
    1,
  );
  assert.equal(conversation.shape, "openai");
  assert.equal(conversation.listKey, "messages");
  assert.deepEqual(conversation.turns, [
    { index: 0, role: "user", name: "user", text: "Weather in Oslo?" },
    { index: 1, role: "assistant", name: "assistant", text: null },
    { index: 2, role: "tool", name: "tool", text: "3 °C" },
    { index: 3, role: "assistant", name: "assistant", text: "It is 3 °C." },
  ]);
});

Deno.test("parseRecord() keeps the tool calls an assistant turn names, to show them", () => {
  const long = "x".repeat(600);
  const turns = parseRecord(
    record([
      { role: "user", content: "Weather in Oslo and Rome?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          {
            id: "c1",
            type: "function",
            function: { name: "weather", arguments: '{"city":"Oslo"}' },
          },
          {
            id: "c2",
            type: "function",
            function: { name: "weather", arguments: { city: "Rome" } },
          },
          { id: "c3", type: "function", function: { name: "log", arguments: long } },
        ],
      },
      { role: "tool", tool_call_id: "c1", content: "3 °C" },
      { role: "assistant", content: "Noted.", function_call: { name: "save", arguments: "{}" } },
    ]),
    1,
  ).turns;
  assert.equal(
    turns[1].calls,
    `weather({"city":"Oslo"}); weather({"city":"Rome"}); log(${"x".repeat(500)}…)`,
  );
  assert.equal(turns[1].text, null);
  assert.equal(turns[3].calls, "save({})");
  assert.equal(turns[3].text, "Noted.");
  assert.equal(turns[0].calls, undefined);
});

Deno.test("parseRecord() accepts a missing content on assistant turns as no text", () => {
  const conversation = parseRecord(
    record([{ role: "user", content: "Go" }, { role: "assistant", tool_calls: [] }]),
    1,
  );
  assert.equal(conversation.turns[1].text, null);
});

Deno.test("parseRecord() normalises every role name, ignoring case", () => {
  const expected = {
    human: "user",
    user: "user",
    gpt: "assistant",
    assistant: "assistant",
    bot: "assistant",
    model: "assistant",
    chatgpt: "assistant",
    system: "system",
    developer: "system",
    tool: "tool",
    function: "tool",
    function_call: "tool",
    observation: "tool",
    ipython: "tool",
    tool_call: "tool",
    tool_response: "tool",
    function_response: "tool",
  };
  for (const [name, role] of Object.entries(expected)) {
    for (const written of [name, name.toUpperCase()]) {
      const sharegpt = parseRecord(record([{ from: written, value: "x" }], "conversations"), 1);
      assert.deepEqual(sharegpt.turns[0], { index: 0, role, name: written, text: "x" });
      const openai = parseRecord(record([{ role: written, content: "x" }]), 1);
      assert.deepEqual(openai.turns[0], { index: 0, role, name: written, text: "x" });
    }
  }
});

Deno.test("parseRecord() joins text parts and marks other parts", () => {
  const conversation = parseRecord(
    record([
      {
        role: "user",
        content: [
          { type: "text", text: "What is " },
          { type: "image_url", image_url: { url: "https://example.com/cat.png" } },
          { type: "text", text: " this?" },
          { type: "input_audio", input_audio: { data: "", format: "wav" } },
        ],
      },
      { role: "assistant", content: [] },
    ]),
    1,
  );
  assert.equal(conversation.turns[0].text, "What is [image_url] this?[input_audio]");
  assert.equal(conversation.turns[1].text, "");
});

Deno.test("parseRecord() reads a refusal part as the answer's text; an answer of images only has none", () => {
  const conversation = parseRecord(
    record([
      { role: "user", content: "Help me pick a lock." },
      { role: "assistant", content: [{ type: "refusal", refusal: "I can't help with that." }] },
      { role: "user", content: "Draw a cat." },
      {
        role: "assistant",
        content: [{ type: "image_url", image_url: { url: "https://x/cat.png" } }],
      },
    ]),
    1,
  );
  assert.equal(conversation.turns[1].text, "I can't help with that.");
  assert.equal(conversation.turns[1].textless, undefined);
  assert.equal(conversation.turns[3].text, "[image_url]");
  assert.equal(conversation.turns[3].textless, true);
  assert.deepEqual(planTurns(conversation).map((request) => request.turnIndex), [1]);
});

Deno.test("parseRecord() takes a top-level system string", () => {
  const text = JSON.stringify({
    system: "You are terse.",
    conversations: [{ from: "human", value: "Hi" }, { from: "gpt", value: "Hi." }],
  });
  assert.equal(parseRecord(text, 1).system, "You are terse.");
  const withNull = JSON.stringify({ system: null, messages: [{ role: "user", content: "x" }] });
  assert.equal(parseRecord(withNull, 1).system, null);
});

Deno.test("parseRecord() uses the first of conversations and messages that is an array", () => {
  const both = JSON.stringify({
    conversations: "see messages",
    messages: [{ role: "user", content: "x" }],
  });
  assert.equal(parseRecord(both, 1).listKey, "messages");
  const first = JSON.stringify({
    conversations: [{ from: "human", value: "x" }],
    messages: [{ role: "user", content: "y" }],
  });
  assert.equal(parseRecord(first, 1).listKey, "conversations");
});

Deno.test("parseRecord() reads lmsys-chat-1m's conversation key and writes it back", () => {
  const text = JSON.stringify({
    conversation_id: "c1",
    conversation: [{ content: "Hi", role: "user" }, { content: "Hello!", role: "assistant" }],
    turn: 1,
    openai_moderation: [{ flagged: false }],
  });
  const conversation = parseRecord(text, 1);
  assert.equal(conversation.listKey, "conversation");
  assert.equal(conversation.shape, "openai");
  assert.equal(
    assembleRecord(conversation, new Map([[1, "Greet."]]), framing),
    text.replace('"Hello!"', '"Thought Process:\\nGreet.\\n\\nAnswer:\\nHello!"'),
  );
});

Deno.test("parseRecord() accepts odd turn orders and empty strings", () => {
  const conversation = parseRecord(
    record([
      { from: "gpt", value: "Welcome!" },
      { from: "gpt", value: "" },
      { from: "human", value: "Thanks" },
    ], "conversations"),
    1,
  );
  assert.deepEqual(conversation.turns.map((turn) => turn.role), ["assistant", "assistant", "user"]);
});

Deno.test("parseRecord() keeps every field of the record untouched", () => {
  const text =
    '{"id":9,"conversations":[{"from":"human","value":"a","lang":"en"}],"meta":{"tags":["x"]}}';
  const conversation = parseRecord(text, 1);
  assert.deepEqual(conversation.record, JSON.parse(text));
  assert.deepEqual(Object.keys(conversation.record), ["id", "conversations", "meta"]);
});

Deno.test("parseRecord() rejects text that is not a JSON object", () => {
  assert.throws(() => parseRecord("{oops", 2), (error: unknown) => {
    assert.ok(error instanceof RecordError);
    assert.equal(error.line, 2);
    assert.match(error.reason, /^not valid JSON: \S/);
    return true;
  });
  assertRejects("[1]", "not a JSON object (found an array)");
  assertRejects('"hi"', "not a JSON object (found a string)");
  assertRejects("null", "not a JSON object (found null)");
  assertRejects("42", "not a JSON object (found a number)");
  assertRejects("true", "not a JSON object (found a boolean)");
  assertRejects("[]", "an empty array: a conversation needs turns");
  // UTF-16 LE without a byte order mark, read as UTF-8: every ASCII character comes with a NUL.
  const utf16 = new TextDecoder().decode(
    new Uint8Array(Array.from('{"a":1}', (char) => [char.charCodeAt(0), 0]).flat()),
  );
  assert.throws(() => parseRecord(utf16, 3), (error: unknown) => {
    assert.ok(error instanceof RecordError);
    assert.match(error.reason, /^not valid JSON: .*; it holds NUL characters, as UTF-16 text/);
    assert.match(error.reason, /iconv -f UTF-16LE -t UTF-8/);
    return true;
  });
  // One stray NUL is no encoding: no such hint.
  assert.throws(() => parseRecord('{"a":"\0"}', 3), (error: unknown) => {
    assert.ok(error instanceof RecordError && !error.reason.includes("UTF-16"));
    return true;
  });
});

Deno.test("parseRecord() reads a record after a byte order mark left where files were joined", () => {
  const text =
    '{"conversations":[{"from":"human","value":"\uFEFFHi"},{"from":"gpt","value":"Hello"}]}';
  const conversation = parseRecord(`\uFEFF${text}`, 4);
  // The mark before the record is dropped; the one inside a string stays.
  assert.equal(conversation.turns[0].text, "\uFEFFHi");
  assert.equal(assembleRecord(conversation, new Map(), framing), text);
});

Deno.test("parseRecord() rejects records without a turn list", () => {
  assertRejects('{"id":1}', NO_CONVERSATION);
  assertRejects(
    '{"text":"### Human: Hi### Assistant: Hello"}',
    `${NO_CONVERSATION}; "text" holds a whole transcript in one string: split it into turns first`,
  );
  assertRejects(
    '{"system":"SYSTEM: Be kind.","chat":"USER: Hi ASSISTANT: Hello <|endoftext|>"}',
    `${NO_CONVERSATION}; "chat" holds a whole transcript in one string: split it into turns first`,
  );
  assertRejects(
    '{"prompt":"Hi","chosen":"Hello","rejected":"Go away"}',
    `${NO_CONVERSATION}; "chosen" and "rejected" make a preference pair (DPO data), not one ` +
      'conversation: take the "chosen" side as the conversation first',
  );
  assertRejects('{"prompt":[{"role":"user","content":"a"}],"completion":[]}', NO_CONVERSATION);
  assertRejects('{"conversations":"hi"}', '"conversations" must be an array (found a string)');
  assertRejects('{"messages":{"role":"user"}}', '"messages" must be an array (found an object)');
  assertRejects('{"conversations":null}', '"conversations" must be an array (found null)');
  assertRejects('{"conversations":[]}', "conversation has no turns");
});

Deno.test("parseRecord() says how to unwrap a wrapper of records", () => {
  const records = '[{"conversations":[{"from":"human","value":"a"},{"from":"gpt","value":"b"}]},' +
    '{"instruction":"c","output":"d"}]';
  assertRejects(
    `{"version":"1.0","data":${records}}`,
    `${NO_CONVERSATION}; its "data" array holds 2 records: unwrap them first ` +
      `(jq -c '.data[]' in.json > in.jsonl)`,
  );
  assertRejects(
    '{"train split":[{"instruction":"c","output":"d"}]}',
    `${NO_CONVERSATION}; its "train split" array holds 1 record: unwrap them first ` +
      `(jq -c '.["train split"][]' in.json > in.jsonl)`,
  );
  // An array of anything else is no wrapper.
  assertRejects('{"tags":[{"name":"x"}],"title":"hello"}', NO_CONVERSATION);
});

Deno.test("parseRecord() reads the chatbots ShareGPT's original dump names as assistants", () => {
  const text = '{"conversations":[{"from":"human","value":"a"},{"from":"bing","value":"b"},' +
    '{"from":"human","value":"c"},{"from":"bard","value":"d"},' +
    '{"from":"human","value":"e"},{"from":"chatgpt","value":"f"}]}';
  assert.deepEqual(
    parseRecord(text, 1).turns.map((turn) => turn.role),
    ["user", "assistant", "user", "assistant", "user", "assistant"],
  );
});

Deno.test("parseRecord() reads OpenAssistant's prompter as the user", () => {
  const text =
    '{"messages":[{"role":"prompter","content":"Hi"},{"role":"assistant","content":"Hello"}]}';
  assert.deepEqual(parseRecord(text, 1).turns.map((turn) => [turn.role, turn.name]), [
    ["user", "prompter"],
    ["assistant", "assistant"],
  ]);
});

Deno.test("parseRecord() rejects a non-string system field", () => {
  assertRejects(
    '{"system":["a"],"messages":[{"role":"user","content":"x"}]}',
    '"system" must be a string (found an array)',
  );
  assertRejects(
    '{"system":1,"messages":[{"role":"user","content":"x"}]}',
    '"system" must be a string (found a number)',
  );
});

Deno.test("parseRecord() rejects turns of the wrong shape", () => {
  const user = { role: "user", content: "x" };
  assertRejects(record([user, user, "hi"]), "turn 3 is not an object (found a string)");
  assertRejects(record([user, null]), "turn 2 is not an object (found null)");
  assertRejects(
    record([user, { speaker: "bot", text: "x" }]),
    "turn 2 has neither {from, value} nor {role, content}",
  );
  assertRejects(
    record([{ from: "human", value: "x" }, { from: "gpt", value: "y" }, user]),
    "turn 3 mixes {role, content} with {from, value} turns",
  );
  assertRejects(
    record([user, { from: "gpt", value: "y" }]),
    "turn 2 mixes {from, value} with {role, content} turns",
  );
});

Deno.test("parseRecord() rejects bad roles", () => {
  assertRejects(
    record([{ from: "human", value: "x" }, { from: "narrator", value: "y" }]),
    'turn 2: unknown role "narrator"',
  );
  assertRejects(
    record([{ role: 3, content: "x" }]),
    'turn 1: "role" must be a string (found a number)',
  );
  assertRejects(
    record([{ from: null, value: "x" }]),
    'turn 1: "from" must be a string (found null)',
  );
});

Deno.test("parseRecord() rejects bad ShareGPT values", () => {
  const human = { from: "human", value: "x" };
  assertRejects(
    record([human, human, { from: "gpt", value: 7 }], "conversations"),
    'turn 3: "value" must be a string (found a number)',
  );
  assertRejects(
    record([{ from: "gpt", value: null }], "conversations"),
    'turn 1: "value" must be a string (found null)',
  );
  assertRejects(record([{ from: "gpt" }], "conversations"), 'turn 1: "value" is missing');
});

Deno.test("parseRecord() rejects bad OpenAI content", () => {
  const user = { role: "user", content: "x" };
  assertRejects(
    record([{ role: "user", content: null }]),
    'turn 1: "content" may be null only on assistant turns',
  );
  assertRejects(
    record([user, { role: "tool", content: null }]),
    'turn 2: "content" may be null only on assistant turns',
  );
  assertRejects(record([{ role: "user" }]), 'turn 1: "content" is missing');
  assertRejects(
    record([user, { role: "assistant", content: { text: "y" } }]),
    'turn 2: "content" must be a string, an array of parts or null (found an object)',
  );
  assertRejects(
    record([{ role: "user", content: ["hi"] }]),
    "turn 1: content part 1 is not an object (found a string)",
  );
  assertRejects(
    record([{ role: "user", content: [{ type: "text", text: "a" }, { text: "b" }] }]),
    'turn 1: content part 2: "type" must be a string (found nothing)',
  );
  assertRejects(
    record([{ role: "user", content: [{ type: "text", text: 5 }] }]),
    'turn 1: content part 1: "text" must be a string (found a number)',
  );
});

Deno.test("composeAnswer() puts preface, thought, suffix and answer on their own lines", () => {
  assert.equal(
    composeAnswer(framing, "Recall the capital.", "Paris."),
    "Thought Process:\nRecall the capital.\n\nAnswer:\nParis.",
  );
  assert.equal(composeAnswer({ preface: "<t>", suffix: "</t>" }, "x", "y"), "<t>\nx\n</t>\ny");
});

Deno.test("assembleRecord() with no thoughts returns the input without its white space", () => {
  const text = '{ "b": 1, "a": [ 1.50, 2e3 ],\n "messages": [ {"role":"user","content":"x"} ] }';
  const conversation = parseRecord(text, 1);
  assert.equal(
    assembleRecord(conversation, new Map(), framing),
    '{"b":1,"a":[1.50,2e3],"messages":[{"role":"user","content":"x"}]}',
  );
});

Deno.test("parseRecord() and assembleRecord() write every number back as it was written", () => {
  const numbers = [
    "12345678901234567890", // an id past 2^53: JavaScript would round it
    "1e400", // past a double: JavaScript would write null
    "-0",
    "1.50",
    "1E5",
    "0.0000001",
    "3",
    "-2.5",
  ];
  const text = `{"id":${numbers[0]},"stats":[${numbers.slice(1).join(",")}],"conversations":[` +
    '{"from":"human","value":"Hi","weight":0.0},{"from":"gpt","value":"Hello","weight":1.0}]}';
  const conversation = parseRecord(text, 1);
  assert.ok(conversation.listKey !== null);
  // Numbers that round-trip stay plain numbers for whoever reads the record.
  assert.equal((conversation.record.stats as unknown[])[5], 3);
  assert.equal(assembleRecord(conversation, new Map(), framing), text);
  const expected = text.replace(
    '"value":"Hello"',
    '"value":"Thought Process:\\nGreet.\\n\\nAnswer:\\nHello"',
  );
  assert.equal(assembleRecord(conversation, new Map([[1, "Greet."]]), framing), expected);
});

Deno.test("parseRecord() keeps a number's text wherever it sits, among few or many numbers", () => {
  const record = (numbers: string[]) =>
    `{"n":[${numbers.join(",")}],"conversations":[{"from":"human","value":"v1.0 or 2e5?"},` +
    '{"from":"gpt","value":"Both."}]}';
  const safe = (count: number) => Array.from({ length: count }, (_, i) => String(i * 7 - 3));
  for (
    const numbers of [
      safe(10),
      [...safe(60), "1.50"],
      [...safe(200), "12345678901234567890"],
      ["-0", ...safe(200)],
      [...safe(30), "1e400", ...safe(30)],
    ]
  ) {
    const text = record(numbers);
    assert.equal(assembleRecord(parseRecord(text, 1), new Map(), framing), text);
  }
});

Deno.test("parseRecord() reads a record nested 999 deep and writes it back", () => {
  const text = `{"deep":${"[".repeat(999)}1.0${"]".repeat(999)},` +
    '"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}';
  const conversation = parseRecord(text, 1);
  const written = assembleRecord(conversation, new Map([[1, "t"]]), framing);
  assert.equal(
    written,
    text.replace('"value":"a"', '"value":"Thought Process:\\nt\\n\\nAnswer:\\na"'),
  );
});

Deno.test("parseRecord() names a number JavaScript cannot hold as a number in its errors", () => {
  const human = { from: "human", value: "x" };
  assertRejects(
    `{"conversations":[${JSON.stringify(human)},{"from":"gpt","value":1.0}]}`,
    'turn 2: "value" must be a string (found a number)',
  );
  assertRejects('{"system":1e400,"messages":[]}', '"system" must be a string (found a number)');
  assertRejects(
    '{"messages":[{"role":"user","content":[1.50]}]}',
    "turn 1: content part 1 is not an object (found a number)",
  );
});

Deno.test("parseRecord() rejects a record nested too deeply to walk, and reads deep ones", () => {
  const nested = (depth: number) =>
    `{"deep":${"[".repeat(depth)}${"]".repeat(depth)},` +
    '"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}';
  assert.equal(parseRecord(nested(500), 1).turns.length, 2);
  assert.throws(() => parseRecord(nested(100_000), 4), (error: unknown) => {
    assert.ok(error instanceof RecordError);
    assert.equal(error.line, 4);
    assert.match(error.reason, /^nested too deeply: \S/);
    return true;
  });
});

Deno.test("assembleRecord() adds thoughts and keeps key order and extra fields", () => {
  const text = JSON.stringify({
    id: "r-1",
    source: "alpaca",
    conversations: [
      { from: "human", value: "2+2?", lang: "en" },
      { from: "gpt", value: "4", weight: 1, meta: { score: 0.9 } },
      { from: "human", value: "3+3?" },
      { markup: "x", from: "gpt", value: "6", after: [1] },
    ],
    weight: 0.5,
    nested: { deep: { list: [1, { a: null }] } },
  });
  const conversation = parseRecord(text, 1);
  const out = assembleRecord(
    conversation,
    new Map([[1, "Add two and two."], [3, "Add."]]),
    framing,
  );
  assert.equal(
    out,
    '{"id":"r-1","source":"alpaca","conversations":[' +
      '{"from":"human","value":"2+2?","lang":"en"},' +
      '{"from":"gpt","value":"Thought Process:\\nAdd two and two.\\n\\nAnswer:\\n4","weight":1,' +
      '"meta":{"score":0.9}},' +
      '{"from":"human","value":"3+3?"},' +
      '{"markup":"x","from":"gpt","value":"Thought Process:\\nAdd.\\n\\nAnswer:\\n6","after":[1]}],' +
      '"weight":0.5,"nested":{"deep":{"list":[1,{"a":null}]}}}',
  );
  assert.ok(!out.includes("\n"));
});

/** `text` with `from` (present once) replaced by `to`. */
function replaceOnce(text: string, from: string, to: string): string {
  assert.equal(text.split(from).length, 2, `${from} occurs once in ${text}`);
  return text.replace(from, () => to);
}

/** `"field":"answer"` as assembleRecord writes it with `thought` in front. */
function answered(field: string, thought: string, answer: string): string {
  return `"${field}":${JSON.stringify(composeAnswer(framing, thought, answer))}`;
}

Deno.test("assembleRecord() keeps integer-like keys where the text put them, at the top level", () => {
  // JavaScript lists array-index keys ("0", "2024", up to 4294967294) first; the others
  // ("01", "-1", "4294967295", "1.5") keep their place as any key does.
  const text = '{"id":"r1","b":1,"2024":"y","01":1,"-1":2,"4294967295":3,"4294967294":4,"1.5":5,' +
    '"0":6,"scores":{"10":0.5,"2":0.1},' +
    '"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}';
  const conversation = parseRecord(text, 1);
  assert.equal(assembleRecord(conversation, new Map(), framing), text);
  assert.equal(
    assembleRecord(conversation, new Map([[1, "t"]]), framing),
    replaceOnce(text, '"value":"a"', answered("value", "t", "a")),
  );
  assert.equal(JSON.stringify(conversation.record).startsWith('{"0":6,"2024":"y"'), true);
});

Deno.test("assembleRecord() keeps integer-like keys in place in metadata, turns and content parts", () => {
  const text = '{"meta":{"a":{"x":1,"3":2,"y":{"z":0,"1":[{"k":1,"0":0}]}}},"messages":[' +
    '{"role":"user","content":"q","5":"u"},' +
    '{"role":"assistant","content":"a","1":{"b":1,"0":2}},' +
    '{"role":"user","content":[{"type":"text","text":"q2","2":"p"}],"1":1},' +
    '{"role":"assistant","content":[{"type":"text","text":"x","0":"p"},' +
    '{"type":"image_url","image_url":{"url":"u","2":"v"}}],"9":9}],"id":"r","10":[]}';
  const conversation = parseRecord(text, 1);
  assert.equal(assembleRecord(conversation, new Map(), framing), text);
  const thoughtPart = `{"type":"text","text":${JSON.stringify(composeAnswer(framing, "u", ""))}}`;
  const expected = replaceOnce(
    replaceOnce(text, '"content":"a"', answered("content", "t", "a")),
    '"content":[{"type":"text","text":"x"',
    `"content":[${thoughtPart},{"type":"text","text":"x"`,
  );
  assert.equal(assembleRecord(conversation, new Map([[1, "t"], [3, "u"]]), framing), expected);
});

Deno.test("assembleRecord() keeps integer-like keys in place beside numbers kept as written", () => {
  const text = '{"id":12345678901234567890,"w":1.50,"10":1e400,"scores":{"10":0.50,"2":-0},' +
    '"conversations":[{"from":"human","value":"q","7":2.0},{"from":"gpt","value":"a","3":1E5}]}';
  const conversation = parseRecord(text, 1);
  assert.equal(assembleRecord(conversation, new Map(), framing), text);
  assert.equal(
    assembleRecord(conversation, new Map([[1, "t"]]), framing),
    replaceOnce(text, '"value":"a"', answered("value", "t", "a")),
  );
  // More numbers than are checked one by one: the key comes after them all.
  const many = `{"n":[${Array.from({ length: 100 }, (_, i) => i).join(",")}],"5":0,` +
    '"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}';
  assert.equal(assembleRecord(parseRecord(many, 1), new Map(), framing), many);
});

Deno.test("assembleRecord() keeps a key given twice where it came first, with its last value", () => {
  const text = '{"b":0,"5":{"9":0,"y":1},"a":1,"5":{"x":2,"1":1},"a":3,' +
    '"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a","2":0,"2":1}]}';
  const conversation = parseRecord(text, 1);
  const kept = '{"b":0,"5":{"x":2,"1":1},"a":3,' +
    '"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a","2":1}]}';
  assert.equal(assembleRecord(conversation, new Map(), framing), kept);
  assert.equal(
    assembleRecord(conversation, new Map([[1, "t"]]), framing),
    replaceOnce(kept, '"value":"a"', answered("value", "t", "a")),
  );
});

Deno.test("assembleRecord() keeps integer-like keys in place in every record format", () => {
  const cases: [string, [number, string][], [string, string][]][] = [
    [
      '{"7":"s","instruction":"And 3+3?","input":"","output":"6","history":[["2+2?","4"]],' +
      '"0":{"b":1,"1":2}}',
      [[1, "t"], [3, "u"]],
      [['"4"]', `${JSON.stringify(composeAnswer(framing, "t", "4"))}]`], [
        '"output":"6"',
        answered("output", "u", "6"),
      ]],
    ],
    [
      '{"question":"q","answer":"a","5":"x"}',
      [[1, "t"]],
      [['"answer":"a"', answered("answer", "t", "a")]],
    ],
    [
      '{"source":"x","conversation":[{"input":"q","output":"a","10":5},' +
      '{"input":"q2","output":"b"}],"1":9}',
      [[1, "t"], [3, "u"]],
      [['"output":"a"', answered("output", "t", "a")], [
        '"output":"b"',
        answered("output", "u", "b"),
      ]],
    ],
    [
      '{"id":"7","data":["q","a"],"3":3}',
      [[1, "t"]],
      [['"a"]', `${JSON.stringify(composeAnswer(framing, "t", "a"))}]`]],
    ],
    [
      '{"prompt":[{"role":"user","content":"q","1":1}],' +
      '"completion":[{"role":"assistant","content":"a","2":2}],"0":0}',
      [[1, "t"]],
      [['"content":"a"', answered("content", "t", "a")]],
    ],
    [
      '[{"from":"human","value":"q","1":1},{"from":"gpt","value":"a","0":0}]',
      [[1, "t"]],
      [['"value":"a"', answered("value", "t", "a")]],
    ],
  ];
  for (const [text, thoughts, changes] of cases) {
    const conversation = parseRecord(text, 1);
    assert.equal(assembleRecord(conversation, new Map(), framing), text);
    const expected = changes.reduce((out, [from, to]) => replaceOnce(out, from, to), text);
    assert.equal(assembleRecord(conversation, new Map(thoughts), framing), expected, text);
    assert.equal(JSON.stringify(conversation.record) === text, false, "JavaScript reorders it");
  }
});

Deno.test("assembleRecord() keeps escaped integer-like keys in place, written as JSON writes them", () => {
  const text = '{"\\u0032":"two","k":"\\ud800","\\u00310" : 1,"\\"3\\"":3,' +
    '"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}';
  const conversation = parseRecord(text, 1);
  assert.equal(
    assembleRecord(conversation, new Map([[1, "t"]]), framing),
    '{"2":"two","k":"\\ud800","10":1,"\\"3\\"":3,"conversations":[{"from":"human","value":"q"},' +
      `{"from":"gpt",${answered("value", "t", "a")}}]}`,
  );
});

Deno.test("parseRecord() and assembleRecord() keep integer-like keys in place in deep records", () => {
  // Deep enough for the reviver's walk, and a record too deep for it is still refused.
  const nested = (depth: number) =>
    `{"deep":${'{"b":1,"1":'.repeat(depth)}0${"}".repeat(depth)},` +
    '"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}';
  const text = nested(1_500);
  assert.equal(
    assembleRecord(parseRecord(text, 1), new Map([[1, "t"]]), framing),
    replaceOnce(text, '"value":"a"', answered("value", "t", "a")),
  );
  assert.throws(() => parseRecord(nested(100_000), 4), (error: unknown) => {
    assert.ok(error instanceof RecordError);
    assert.match(error.reason, /^nested too deeply: \S/);
    return true;
  });
});

Deno.test("assembleRecord() writes OpenAI records back as OpenAI without adding a system turn", () => {
  const text = JSON.stringify({
    messages: [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello", name: "bob" },
    ],
    id: 3,
  });
  const out = JSON.parse(assembleRecord(parseRecord(text, 1), new Map([[1, "Greet."]]), framing));
  assert.deepEqual(out, {
    messages: [
      { role: "user", content: "Hi" },
      { role: "assistant", content: composeAnswer(framing, "Greet.", "Hello"), name: "bob" },
    ],
    id: 3,
  });
});

Deno.test("assembleRecord() puts the thought in a new first part of array content", () => {
  const parts = [
    { type: "text", text: "Look: " },
    { type: "image_url", image_url: { url: "https://example.com/a.png" } },
    { type: "text", text: "a cat." },
  ];
  const text = record([{ role: "user", content: "What is it?" }, {
    role: "assistant",
    content: parts,
  }]);
  const out = JSON.parse(
    assembleRecord(parseRecord(text, 1), new Map([[1, "Describe."]]), framing),
  );
  const content = out.messages[1].content;
  assert.deepEqual(content.slice(1), parts);
  assert.deepEqual(Object.keys(content[0]), ["type", "text"]);
  assert.equal(content[0].type, "text");
  const joined = content
    .filter((part: { type: string }) => part.type === "text")
    .map((part: { text: string }) => part.text)
    .join("");
  assert.equal(joined, composeAnswer(framing, "Describe.", "Look: a cat."));
});

Deno.test("parseRecord() reads the Responses API's input_text and output_text parts as text", () => {
  const text = record([
    { role: "user", content: [{ type: "input_text", text: "Name a colour." }] },
    { role: "assistant", content: [{ type: "output_text", text: "Blue.", annotations: [] }] },
  ]);
  const conversation = parseRecord(text, 1);
  assert.deepEqual(conversation.turns.map((turn) => [turn.text, turn.textless]), [
    ["Name a colour.", undefined],
    ["Blue.", undefined],
  ]);
  const out = JSON.parse(assembleRecord(conversation, new Map([[1, "Pick one."]]), framing));
  assert.deepEqual(out.messages[1].content, [
    { type: "output_text", text: composeAnswer(framing, "Pick one.", "") },
    { type: "output_text", text: "Blue.", annotations: [] },
  ]);
});

Deno.test("assembleRecord() does not modify the parsed record", () => {
  const text = JSON.stringify({
    id: 1,
    messages: [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello" },
      { role: "assistant", content: [{ type: "text", text: "More" }] },
    ],
  });
  const conversation = parseRecord(text, 1);
  assert.ok(conversation.listKey !== null);
  const before = structuredClone(conversation.record);
  const list = conversation.record.messages;
  assembleRecord(conversation, new Map([[1, "a"], [2, "b"]]), framing);
  assert.deepEqual(conversation.record, before);
  assert.equal(conversation.record.messages, list);
  assert.equal(JSON.stringify(conversation.record), text);
});

Deno.test("assembleRecord() refuses thoughts for missing turns or turns without text", () => {
  const conversation = parseRecord(
    record([{ role: "user", content: "Go" }, { role: "assistant", content: null }]),
    4,
  );
  assert.throws(() => assembleRecord(conversation, new Map([[2, "x"]]), framing), RangeError);
  assert.throws(() => assembleRecord(conversation, new Map([[-1, "x"]]), framing), RangeError);
  assert.throws(
    () => assembleRecord(conversation, new Map([[1, "x"]]), framing),
    new TypeError("Cannot add a thought to turn 2 of record at line 4: it has no text"),
  );
});

Deno.test("hasThought() recognises answers written in the framing's format, and only those", () => {
  assert.equal(hasThought(framing, composeAnswer(framing, "Add.", "4")), true);
  assert.equal(hasThought(framing, composeAnswer(framing, "Multi\nline.", "")), true);
  assert.equal(hasThought(framing, "4"), false);
  assert.equal(hasThought(framing, "Thought Process:\nno suffix follows"), false);
  assert.equal(hasThought(framing, "Thought Process: inline\n\nAnswer:\n4"), false);
  assert.equal(hasThought(framing, " Thought Process:\nx\n\nAnswer:\n4"), false);
  const custom = { preface: "Reasoning:", suffix: "Final:" };
  assert.equal(hasThought(custom, composeAnswer(custom, "Hmm.", "Yes.")), true);
  assert.equal(hasThought(framing, composeAnswer(custom, "Hmm.", "Yes.")), false);
  // Windows line ends, as an editor or a CSV round trip leaves them.
  const crlf = composeAnswer(framing, "Add.", "4").replaceAll("\n", "\r\n");
  assert.equal(hasThought(framing, crlf), true);
  // A leading <think> block (DeepSeek-R1, QwQ and data distilled from them) is a thought in any
  // framing, inline or on lines of its own; a mention of the tag is not.
  const think = { preface: "<think>", suffix: "</think>" };
  for (const answer of ["<think>\n2 and 2.\n</think>\n\n4", "  <think>2 and 2.</think>4"]) {
    assert.equal(hasThought(framing, answer), true, answer);
    assert.equal(hasThought(think, answer), true, answer);
  }
  assert.equal(hasThought(framing, "Wrap it in <think></think>."), false);
  assert.equal(hasThought(framing, "<think> is an HTML-like tag"), false);
  // Nothing marks a thought when both are blank: every answer would "have" one.
  const blank = { preface: "", suffix: "" };
  assert.equal(hasThought(blank, composeAnswer(blank, "Hmm.", "Yes.")), false);
});

Deno.test("parseRecord() marks answers that keep their reasoning beside their text", () => {
  const record = (assistant: Record<string, unknown>) =>
    parseRecord(
      JSON.stringify({
        messages: [{ role: "user", content: "2+2?" }, { role: "assistant", ...assistant }],
      }),
      1,
    ).turns[1];
  const deepseek = record({ content: "4", reasoning_content: "2 and 2 make 4." });
  assert.deepEqual(deepseek, {
    index: 1,
    role: "assistant",
    name: "assistant",
    text: "4",
    reasoned: true,
  });
  assert.equal(record({ content: "4", reasoning: "Add." }).reasoned, true);
  const parts = record({
    content: [{ type: "thinking", thinking: "Add." }, { type: "text", text: "4" }],
  });
  assert.equal(parts.reasoned, true);
  assert.equal(parts.text, "[thinking]4");
  // An empty reasoning field is no reasoning; a user turn's field is not the answer's.
  assert.equal(record({ content: "4", reasoning_content: "" }).reasoned, undefined);
  assert.equal(record({ content: "4" }).reasoned, undefined);
});

Deno.test("parseRecord() reads flat Alpaca and Dolly records as one exchange", () => {
  const alpaca = parseRecord('{"instruction":"Sum.","input":"1 and 2","output":"3"}', 1);
  assert.equal(alpaca.shape, "instruction");
  assert.equal(alpaca.listKey, "output");
  assert.deepEqual(alpaca.turns, [
    { index: 0, role: "user", name: "instruction", text: "Sum.\n\n1 and 2" },
    { index: 1, role: "assistant", name: "output", text: "3" },
  ]);
  const dolly = parseRecord(
    '{"instruction":"Who?","context":"  ","response":"Me.","system":"Be kind."}',
    1,
  );
  assert.equal(dolly.listKey, "response");
  assert.equal(dolly.system, "Be kind.");
  assert.equal(dolly.turns[0].text, "Who?");
  // A turn list wins over flat fields.
  const both = '{"instruction":"x","output":"y","messages":[{"role":"user","content":"z"}]}';
  assert.equal(parseRecord(both, 1).shape, "openai");
});

Deno.test("parseRecord() rejects flat records with fields of the wrong type", () => {
  assertRejects('{"instruction":"x","output":5}', '"output" must be a string (found a number)');
  assertRejects(
    '{"instruction":"x","input":["a"],"output":"y"}',
    '"input" must be a string (found an array)',
  );
  assertRejects('{"instruction":"x"}', NO_CONVERSATION);
  assertRejects(
    '{"question":"x","response":"y","system_prompt":7}',
    '"system_prompt" must be a string (found a number)',
  );
  assertRejects('{"prompt":"x","completion":null}', '"completion" must be a string (found null)');
});

Deno.test("parseRecord() reads OpenOrca, prompt-completion and FLAN records as one exchange", () => {
  const orca = parseRecord(
    '{"id":"niv.1","system_prompt":"You are an AI assistant.","question":"2+2?","response":"4"}',
    1,
  );
  assert.equal(orca.shape, "instruction");
  assert.equal(orca.listKey, "response");
  assert.equal(orca.system, "You are an AI assistant.");
  assert.deepEqual(orca.turns, [
    { index: 0, role: "user", name: "question", text: "2+2?" },
    { index: 1, role: "assistant", name: "response", text: "4" },
  ]);
  // An empty or null system_prompt leaves the top-level system, if any.
  assert.equal(parseRecord('{"question":"q","response":"r","system_prompt":null}', 1).system, null);
  const legacy = parseRecord(
    '{"prompt":"Capital of France?\\n\\n###\\n\\n","completion":" Paris"}',
    1,
  );
  assert.equal(legacy.listKey, "completion");
  assert.deepEqual(legacy.turns.map((turn) => turn.text), [
    "Capital of France?\n\n###\n\n",
    " Paris",
  ]);
  assert.equal(parseRecord('{"prompt":"p","response":"r","source":"x"}', 1).listKey, "response");
  for (
    const [text, answerKey] of [
      ['{"question":"Q?","answer":"A. #### 4"}', "answer"], // GSM8K
      ['{"query":"Q?","response":"A.","type":"GSM_AnsAug"}', "response"], // MetaMathQA
      ['{"problem":"Q?","solution":"A.","level":"Level 1"}', "solution"], // MATH
      ['{"query":"Q?","answer":"A.","resource":"wizard"}', "answer"], // CodeFeedback
      ['{"input":"Q?","output":"A."}', "output"],
    ] as const
  ) {
    const conversation = parseRecord(text, 1);
    assert.equal(conversation.listKey, answerKey, text);
    assert.deepEqual(conversation.turns.map((turn) => turn.role), ["user", "assistant"]);
  }
  // sql-create-context: the schema in "context" follows the question.
  const sql = parseRecord(
    '{"answer":"SELECT COUNT(*) FROM head","question":"How many heads?","context":"CREATE TABLE head (age INTEGER)"}',
    1,
  );
  assert.equal(sql.turns[0].text, "How many heads?\n\nCREATE TABLE head (age INTEGER)");
  assert.equal(sql.turns[1].text, "SELECT COUNT(*) FROM head");
  const flan = parseRecord('{"inputs":"Translate: chat","targets":"cat","task":"wmt"}', 1);
  assert.deepEqual(flan.turns.map((turn) => [turn.role, turn.text]), [
    ["user", "Translate: chat"],
    ["assistant", "cat"],
  ]);
  // The answer's field alone changes; the others keep their order and text.
  assert.equal(
    assembleRecord(orca, new Map([[1, "Add."]]), framing),
    '{"id":"niv.1","system_prompt":"You are an AI assistant.","question":"2+2?",' +
      '"response":"Thought Process:\\nAdd.\\n\\nAnswer:\\n4"}',
  );
});

Deno.test("assembleRecord() writes a flat record's thought into its answer field only", () => {
  const text = '{"id":1,"instruction":"Sum.","input":"","output":"3","n":1.50}';
  const conversation = parseRecord(text, 1);
  assert.equal(
    assembleRecord(conversation, new Map([[1, "Add."]]), framing),
    '{"id":1,"instruction":"Sum.","input":"","output":"Thought Process:\\nAdd.\\n\\nAnswer:\\n3",' +
      '"n":1.50}',
  );
  assert.throws(() => assembleRecord(conversation, new Map([[0, "x"]]), framing), RangeError);
});

Deno.test("parseRecord() and assembleRecord() read and write an Alpaca history", () => {
  const text = JSON.stringify({
    instruction: "And 3+3?",
    input: "",
    output: "6",
    system: "Be brief.",
    history: [["2+2?", "4"], ["Hi", ""]],
  });
  const conversation = parseRecord(text, 1);
  assert.deepEqual(conversation.turns.map((turn) => [turn.index, turn.role, turn.text]), [
    [0, "user", "2+2?"],
    [1, "assistant", "4"],
    [2, "user", "Hi"],
    [3, "assistant", ""],
    [4, "user", "And 3+3?"],
    [5, "assistant", "6"],
  ]);
  const written = JSON.parse(
    assembleRecord(conversation, new Map([[1, "Add."], [5, "Add again."]]), framing),
  );
  assert.deepEqual(written, {
    ...JSON.parse(text),
    output: composeAnswer(framing, "Add again.", "6"),
    history: [["2+2?", composeAnswer(framing, "Add.", "4")], ["Hi", ""]],
  });
  assert.throws(() => assembleRecord(conversation, new Map([[2, "x"]]), framing), RangeError);
});

Deno.test("parseRecord() rejects an Alpaca history that is not a list of pairs", () => {
  const base = { instruction: "q", output: "a" };
  assertRejects(
    JSON.stringify({ ...base, history: "none" }),
    '"history" must be an array (found a string)',
  );
  assertRejects(
    JSON.stringify({ ...base, history: [["q", "a"], ["only one"]] }),
    '"history" item 2 must be a [query, response] pair of strings',
  );
  assertRejects(
    JSON.stringify({ ...base, history: [["q", 1]] }),
    '"history" item 1 must be a [query, response] pair of strings',
  );
  assert.equal(parseRecord(JSON.stringify({ ...base, history: null }), 1).turns.length, 2);
});

Deno.test("parseRecord() and assembleRecord() read and write Capybara's {input, output} pairs", () => {
  const text = JSON.stringify({
    source: "Airoboros",
    conversation: [
      { input: "2+2?", output: "4", rating: 5 },
      { input: "Hi", output: "" },
      { input: "And 3+3?", output: "6" },
    ],
    id: 9,
  });
  const conversation = parseRecord(text, 1);
  assert.equal(conversation.shape, "pairs");
  assert.deepEqual(
    conversation.turns.map((turn) => [turn.index, turn.role, turn.name, turn.text]),
    [
      [0, "user", "input", "2+2?"],
      [1, "assistant", "output", "4"],
      [2, "user", "input", "Hi"],
      [3, "assistant", "output", ""],
      [4, "user", "input", "And 3+3?"],
      [5, "assistant", "output", "6"],
    ],
  );
  const written = assembleRecord(conversation, new Map([[1, "Add."], [5, "Add again."]]), framing);
  assert.deepEqual(Object.keys(JSON.parse(written)), ["source", "conversation", "id"]);
  assert.deepEqual(JSON.parse(written), {
    ...JSON.parse(text),
    conversation: [
      { input: "2+2?", output: composeAnswer(framing, "Add.", "4"), rating: 5 },
      { input: "Hi", output: "" },
      { input: "And 3+3?", output: composeAnswer(framing, "Add again.", "6") },
    ],
  });
  assert.throws(() => assembleRecord(conversation, new Map([[2, "x"]]), framing), RangeError);
});

Deno.test("parseRecord() rejects {input, output} pairs that are not all such pairs of strings", () => {
  const pair = { input: "q", output: "a" };
  assertRejects(
    record([pair, { from: "human", value: "x" }], "conversation"),
    "pair 2 is not an {input, output} pair like pair 1",
  );
  assertRejects(record([pair, "text"], "conversation"), "pair 2 is not an object (found a string)");
  assertRejects(
    record([{ input: "q", output: null }], "conversation"),
    'pair 1: "output" must be a string (found null)',
  );
  assertRejects(
    record([{ input: 3, output: "a" }], "conversation"),
    'pair 1: "input" must be a string (found a number)',
  );
});

Deno.test("parseRecord() and assembleRecord() read and write UltraChat's bare strings", () => {
  const text = '{"id":"7","data":["2+2?","4","And 3+3?","6","Thanks"]}';
  const conversation = parseRecord(text, 1);
  assert.equal(conversation.shape, "texts");
  assert.equal(conversation.listKey, "data");
  assert.deepEqual(conversation.turns.map((turn) => [turn.index, turn.role, turn.text]), [
    [0, "user", "2+2?"],
    [1, "assistant", "4"],
    [2, "user", "And 3+3?"],
    [3, "assistant", "6"],
    [4, "user", "Thanks"],
  ]);
  assert.equal(
    assembleRecord(conversation, new Map([[1, "Add."], [3, "Add again."]]), framing),
    JSON.stringify({
      id: "7",
      data: [
        "2+2?",
        composeAnswer(framing, "Add.", "4"),
        "And 3+3?",
        composeAnswer(framing, "Add again.", "6"),
        "Thanks",
      ],
    }),
  );
  assert.throws(() => assembleRecord(conversation, new Map([[2, "x"]]), framing), RangeError);
  // Bare strings under a turn list's key take turns the same way.
  assert.equal(parseRecord('{"conversations":["q","a"]}', 1).shape, "texts");
  // A list mixing strings and turns is neither.
  assertRejects(
    '{"conversations":["q",{"from":"gpt","value":"a"}]}',
    "turn 1 is not an object (found a string)",
  );
  assertRejects('{"data":["q",1]}', NO_CONVERSATION);
});

Deno.test("parseRecord() and assembleRecord() read and write TRL's prompt and completion lists", () => {
  const text = JSON.stringify({
    prompt: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "2+2?" },
      { role: "assistant", content: "4" },
      { role: "user", content: "And 3+3?" },
    ],
    completion: [{ role: "assistant", content: "6" }],
    id: 3,
  });
  const conversation = parseRecord(text, 1);
  assert.equal(conversation.shape, "openai");
  assert.deepEqual(conversation.turns.map((turn) => [turn.index, turn.role, turn.text]), [
    [0, "system", "Be brief."],
    [1, "user", "2+2?"],
    [2, "assistant", "4"],
    [3, "user", "And 3+3?"],
    [4, "assistant", "6"],
  ]);
  const written = JSON.parse(
    assembleRecord(conversation, new Map([[2, "Add."], [4, "Add again."]]), framing),
  );
  const original = JSON.parse(text);
  assert.deepEqual(Object.keys(written), ["prompt", "completion", "id"]);
  assert.deepEqual(written.prompt, [
    ...original.prompt.slice(0, 2),
    { role: "assistant", content: composeAnswer(framing, "Add.", "4") },
    original.prompt[3],
  ]);
  assert.deepEqual(written.completion, [
    { role: "assistant", content: composeAnswer(framing, "Add again.", "6") },
  ]);
  assertRejects(
    '{"prompt":[{"role":"user","content":"a"}],"completion":[{"from":"gpt","value":"b"}]}',
    "turn 2 mixes {from, value} with {role, content} turns",
  );
});

Deno.test("parseRecord() and assembleRecord() read and write a bare list of ShareGPT turns", () => {
  const text = '[{"from":"system","value":"Be brief.","lang":"en"},' +
    '{"from":"human","value":"2+2?"},{"id":7,"from":"gpt","value":"4","score":1.50}]';
  const conversation = parseRecord(text, 4);
  const { record: parsed, ...rest } = conversation;
  assert.ok(Array.isArray(parsed));
  assert.equal(JSON.stringify(parsed), text);
  assert.deepEqual(rest, {
    line: 4,
    shape: "sharegpt",
    listKey: null,
    system: null,
    turns: [
      { index: 0, role: "system", name: "system", text: "Be brief." },
      { index: 1, role: "user", name: "human", text: "2+2?" },
      { index: 2, role: "assistant", name: "gpt", text: "4" },
    ],
  });
  assert.equal(assembleRecord(conversation, new Map(), framing), text);
  // Still an array; every other field of every turn kept, in order, and 1.50 as written.
  assert.equal(
    assembleRecord(conversation, new Map([[2, "Add."]]), framing),
    text.replace('"value":"4"', '"value":"Thought Process:\\nAdd.\\n\\nAnswer:\\n4"'),
  );
  assert.equal(JSON.stringify(conversation.record), text, "the parsed record is not modified");
});

Deno.test("parseRecord() and assembleRecord() read and write a bare list of OpenAI turns", () => {
  const parts = [{ type: "text", text: "A cat." }];
  const turns = [
    { role: "user", content: "Weather in Oslo?" },
    { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function" }] },
    { role: "tool", tool_call_id: "c1", content: "3 °C" },
    { role: "assistant", content: "It is 3 °C.", name: "bob" },
    { role: "user", content: "And this?" },
    { role: "assistant", content: parts },
  ];
  const conversation = parseRecord(JSON.stringify(turns), 1);
  assert.equal(conversation.shape, "openai");
  assert.equal(conversation.listKey, null);
  assert.deepEqual(conversation.turns.map((turn) => [turn.role, turn.text]), [
    ["user", "Weather in Oslo?"],
    ["assistant", null],
    ["tool", "3 °C"],
    ["assistant", "It is 3 °C."],
    ["user", "And this?"],
    ["assistant", "A cat."],
  ]);
  const written = JSON.parse(
    assembleRecord(conversation, new Map([[3, "Read the tool."], [5, "Look."]]), framing),
  );
  assert.deepEqual(written, [
    ...turns.slice(0, 3),
    {
      role: "assistant",
      content: composeAnswer(framing, "Read the tool.", "It is 3 °C."),
      name: "bob",
    },
    turns[4],
    {
      role: "assistant",
      content: [{ type: "text", text: composeAnswer(framing, "Look.", "") }, ...parts],
    },
  ]);
  assert.deepEqual(conversation.record, turns);
  assert.throws(
    () => assembleRecord(conversation, new Map([[1, "x"]]), framing),
    new TypeError("Cannot add a thought to turn 2 of record at line 1: it has no text"),
  );
  assert.throws(() => assembleRecord(conversation, new Map([[6, "x"]]), framing), RangeError);
});

Deno.test("parseRecord() rejects a bare array's malformed turns as a listed record's", () => {
  const human = { from: "human", value: "x" };
  assertRejects(JSON.stringify([human, 42]), "turn 2 is not an object (found a number)");
  assertRejects(
    JSON.stringify([human, { speaker: "bot", text: "y" }]),
    "turn 2 has neither {from, value} nor {role, content}",
  );
  assertRejects(
    JSON.stringify([human, { role: "assistant", content: "y" }]),
    "turn 2 mixes {role, content} with {from, value} turns",
  );
  assertRejects(
    JSON.stringify([{ from: "narrator", value: "y" }]),
    'turn 1: unknown role "narrator"',
  );
  assertRejects(
    JSON.stringify([human, { from: "gpt", value: 7 }]),
    'turn 2: "value" must be a string (found a number)',
  );
  assertRejects(JSON.stringify([{ role: "user" }]), 'turn 1: "content" is missing');
});

Deno.test("parseRecord() rejects an array that does not start with a turn as no object", () => {
  const sharegpt = record([{ from: "human", value: "x" }], "conversations");
  for (const text of ["[1]", `[${sharegpt}]`, `[[{"from":"human","value":"x"}]]`]) {
    assertRejects(text, "not a JSON object (found an array)");
  }
  assertRejects("[]", "an empty array: a conversation needs turns");
});

Deno.test("parseRecord() rejects a lone turn as one turn, not a conversation", () => {
  const reason = (keys: string) =>
    `one turn, not a conversation: a record is a whole list of ${keys} turns, as a JSON array ` +
    'on one line or under "conversations" or "messages"';
  assertRejects('{"from":"human","value":"Hi"}', reason("{from, value}"), 3);
  assertRejects('{"role":"assistant","content":"Hello"}', reason("{role, content}"));
  // A flat record that also has a role is read as its format, not as a turn.
  const flat = parseRecord('{"role":"teacher","instruction":"Hi","output":"Hello"}', 1);
  assert.equal(flat.shape, "instruction");
});

Deno.test("isTurnList() takes a non-empty array of objects that each have from or role", () => {
  assert.equal(isTurnList([{ from: "human", value: "Hi" }]), true);
  assert.equal(isTurnList([{ role: "user", content: "Hi" }, { from: "gpt", value: "x" }]), true);
  assert.equal(isTurnList([{ role: "user", content: "Hi" }, 1]), false);
  assert.equal(isTurnList([{ conversations: [] }]), false);
  assert.equal(isTurnList([[{ from: "human", value: "Hi" }]]), false);
  assert.equal(isTurnList([]), false);
  assert.equal(isTurnList({ from: "human", value: "Hi" }), false);
});

Deno.test("parseRecord() reads a turn list first, whatever else the record holds", () => {
  // A `data` list of tags beside a flat record is metadata, not an UltraChat conversation.
  const alpaca = parseRecord(
    '{"instruction":"Name a colour.","input":"","output":"Blue.","data":["alpaca","gpt4"]}',
    1,
  );
  assert.equal(alpaca.shape, "instruction");
  assert.equal(alpaca.listKey, "output");
  assert.deepEqual(alpaca.turns.map((turn) => turn.text), ["Name a colour.", "Blue."]);
  // `prompt`/`completion` arrays beside a `messages` list are a copy of it, not the record.
  const chat = parseRecord(
    '{"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}],' +
      '"prompt":[{"role":"user","content":"2+2?"}],' +
      '"completion":[{"role":"assistant","content":"4"}]}',
    1,
  );
  assert.equal(chat.listKey, "messages");
  assert.equal(chat.tail, undefined);
  assert.equal(
    assembleRecord(chat, new Map([[1, "t"]]), framing),
    '{"messages":[{"role":"user","content":"2+2?"},' +
      `{"role":"assistant",${answered("content", "t", "4")}}],` +
      '"prompt":[{"role":"user","content":"2+2?"}],' +
      '"completion":[{"role":"assistant","content":"4"}]}',
  );
  // UltraChat itself still reads.
  const ultra = parseRecord('{"id":"u1","data":["Hi","Hello"]}', 1);
  assert.equal(ultra.shape, "texts");
  assert.equal(ultra.listKey, "data");
});

Deno.test("parseRecord() reads a merged dataframe export's rows, whose other format's columns are null", () => {
  const alpaca = parseRecord(
    '{"instruction":"Name a colour.","input":"","output":"Blue.","conversations":null}',
    1,
  );
  assert.equal(alpaca.shape, "instruction");
  const gsm = parseRecord('{"question":"2+2?","answer":"4","messages":null,"system":null}', 2);
  assert.deepEqual(gsm.turns.map((turn) => turn.text), ["2+2?", "4"]);
  // A turn with both shapes' keys, one pair of them null, is read by the other.
  const union = parseRecord(
    '{"messages":[{"from":null,"value":null,"role":"user","content":"hi"},' +
      '{"from":null,"value":null,"role":"assistant","content":"hello"}]}',
    3,
  );
  assert.equal(union.shape, "openai");
  assert.equal(
    assembleRecord(union, new Map([[1, "t"]]), framing),
    '{"messages":[{"from":null,"value":null,"role":"user","content":"hi"},' +
      `{"from":null,"value":null,"role":"assistant",${answered("content", "t", "hello")}}]}`,
  );
  const sharegpt = parseRecord(
    '{"conversations":[{"from":"human","value":"hi","role":null},' +
      '{"from":"gpt","value":"hello","role":null}]}',
    4,
  );
  assert.equal(sharegpt.shape, "sharegpt");
  assertRejects(
    '{"messages":[{"from":null,"role":null}]}',
    'turn 1: "from" must be a string (found null)',
  );
});

Deno.test("parseRecord() says where NaN and Infinity, which are not JSON, come from", () => {
  for (const value of ["NaN", "Infinity", "-Infinity"]) {
    assert.throws(
      () =>
        parseRecord(
          `{"score":${value},"conversations":[{"from":"human","value":"q"},` +
            '{"from":"gpt","value":"a"}]}',
          7,
        ),
      (error: unknown) =>
        error instanceof RecordError && error.line === 7 &&
        /^not valid JSON: .*; NaN and Infinity are not JSON \(Python's json\.dumps writes them\)/
          .test(error.reason),
    );
  }
  // In a string it is text, and other invalid JSON gets no such hint.
  assert.throws(
    () => parseRecord('{"a":"NaN", oops}', 1),
    (error: unknown) => error instanceof RecordError && !error.reason.includes("NaN and Infinity"),
  );
});
