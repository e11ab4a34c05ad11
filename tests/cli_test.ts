import assert from "node:assert/strict";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { lockOutputFolder } from "../src/output_lock.ts";
import {
  answerOf,
  cliCommand,
  convertArgs,
  expectedThought,
  lastPrompt,
  MAIN,
  parseJsonl,
  runCli,
  tempTree,
} from "./cli_helpers.ts";
import { startFakeOpenAI } from "./fake_openai.ts";

type Json = Record<string, unknown>;

/** Rebuilds each expected record: assistant answers prefixed with the thought made for them. */
function withThoughts(
  record: Json,
  thoughtsByAnswer: Map<string, string>,
  framing = { preface: "Thought Process:", suffix: "\nAnswer:" },
): Json {
  const key = "conversations" in record ? "conversations" : "messages";
  return { ...record, [key]: turnsWithThoughts(record[key] as Json[], thoughtsByAnswer, framing) };
}

/** Rebuilds a turn list: answers prefixed with the thought made for them. */
function turnsWithThoughts(
  turns: readonly Json[],
  thoughtsByAnswer: Map<string, string>,
  framing = { preface: "Thought Process:", suffix: "\nAnswer:" },
): Json[] {
  return turns.map((turn) => {
    const text = (turn.value ?? turn.content) as unknown;
    const thought = typeof text === "string" ? thoughtsByAnswer.get(text) : undefined;
    if (thought === undefined) return turn;
    const field = "value" in turn ? "value" : "content";
    return { ...turn, [field]: `${framing.preface}\n${thought}\n${framing.suffix}\n${text}` };
  });
}

function thoughtsFrom(bodies: readonly { messages: readonly { content: unknown }[] }[]) {
  const map = new Map<string, string>();
  for (const body of bodies) {
    const prompt = lastPrompt(body);
    map.set(answerOf(prompt), expectedThought(prompt));
  }
  return map;
}

const SHAREGPT = [
  {
    id: "a1",
    source: "alpaca",
    conversations: [
      { from: "human", value: "Name a prime number." },
      { from: "gpt", value: "7 is a prime number." },
    ],
    weight: 1,
  },
  {
    id: "m2",
    conversations: [
      { from: "system", value: "You are terse." },
      { from: "human", value: "Capital of France?" },
      { from: "gpt", value: "Paris." },
      { from: "human", value: "And of Spain?", note: { kept: true } },
      { from: "gpt", value: "Madrid." },
    ],
  },
  {
    id: "t3",
    conversations: [
      { from: "human", value: "Weather in Oslo?" },
      { from: "function_call", value: '{"name":"weather","arguments":{"city":"Oslo"}}' },
      { from: "observation", value: '{"sky":"snow"}' },
      { from: "gpt", value: "It is snowing in Oslo." },
    ],
  },
];

Deno.test("cli: ShareGPT single-turn, multi-turn, system and tool records come out exact", async () => {
  await using fake = await startFakeOpenAI({ recordBodies: true });
  const root = await tempTree({
    "in/data.jsonl": SHAREGPT.map((r) => JSON.stringify(r)).join("\n") + "\n",
  });
  const result = await runCli([
    join(root, "in/data.jsonl"),
    "-o",
    join(root, "out"),
    "--base-url",
    fake.url,
    "--model",
    "test-model",
    "--no-cache",
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(fake.stats.requests, 4, "one call per answered assistant turn");

  const thoughts = thoughtsFrom(fake.bodies);
  const output = parseJsonl(await Deno.readTextFile(join(root, "out/data.jsonl")));
  assert.deepEqual(output, SHAREGPT.map((record) => withThoughts(record, thoughts)));
  // Key order is kept, not just the values.
  assert.deepEqual(Object.keys(output[0] as Json), ["id", "source", "conversations", "weight"]);
  await assert.rejects(() => Deno.stat(join(root, "out/data.rejects.jsonl")), Deno.errors.NotFound);

  // The second answer of the multi-turn record saw the first exchange as history.
  const madrid = fake.bodies.map(lastPrompt).find((p) => answerOf(p) === "Madrid.")!;
  assert.match(madrid, /<history>\n[^]*Capital of France\?[^]*Paris\.[^]*<\/history>/);
  assert.match(madrid, /<system_prompt>\nYou are terse\.\n<\/system_prompt>/);
  // The tool record's answer saw the tool activity; no system prompt was invented.
  const oslo = fake.bodies.map(lastPrompt).find((p) => answerOf(p) === "It is snowing in Oslo.")!;
  assert.match(oslo, /<tool_activity>\n[^]*snow[^]*<\/tool_activity>/);
  assert.match(oslo, /<system_prompt>\n\(none\)\n<\/system_prompt>/);
  assert.equal(fake.bodies[0].model, "test-model");
  assert.match(result.stderr, /3 written, 0 rejected, 0 skipped/);
});

Deno.test("cli: Alpaca and Dolly records get a thought in their answer field", async () => {
  await using fake = await startFakeOpenAI({ recordBodies: true });
  const records = [
    { instruction: "Summarize the text.", input: "The cat sat on the mat.", output: "A cat sat." },
    { instruction: "Who wrote Hamlet?", context: "", response: "Shakespeare.", category: "qa" },
  ];
  const root = await tempTree({
    "in/flat.jsonl": records.map((r) => JSON.stringify(r)).join("\n") + "\n",
  });
  const result = await runCli(
    convertArgs(join(root, "in/flat.jsonl"), join(root, "out"), fake.url),
  );
  assert.equal(result.code, 0, result.stderr);
  const prompts = fake.bodies.map(lastPrompt);
  const summary = prompts.find((prompt) => answerOf(prompt) === "A cat sat.")!;
  assert.match(summary, /<user_message>\nSummarize the text\.\n\nThe cat sat on the mat\.\n/);
  const output = parseJsonl(await Deno.readTextFile(join(root, "out/flat.jsonl"))) as Json[];
  const framed = (prompt: string) =>
    `Thought Process:\n${expectedThought(prompt)}\n\nAnswer:\n${answerOf(prompt)}`;
  assert.deepEqual(output, [
    { ...records[0], output: framed(summary) },
    { ...records[1], response: framed(prompts.find((p) => answerOf(p) === "Shakespeare.")!) },
  ]);
  assert.deepEqual(Object.keys(output[1]), ["instruction", "context", "response", "category"]);
});

Deno.test("cli: OpenAI records keep their format, content parts and tool calls", async () => {
  await using fake = await startFakeOpenAI({ recordBodies: true });
  const records = [
    {
      messages: [
        { role: "user", content: [{ type: "text", text: "Say hi in French." }] },
        { role: "assistant", content: [{ type: "text", text: "Bonjour !" }] },
      ],
    },
    {
      messages: [
        { role: "user", content: "2+2?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c1", type: "function", function: { name: "add", arguments: "{}" } }],
        },
        { role: "tool", tool_call_id: "c1", content: "4" },
        { role: "assistant", content: "4." },
      ],
      meta: { split: "train" },
    },
  ];
  const root = await tempTree({ "oa.jsonl": records.map((r) => JSON.stringify(r)).join("\n") });
  const result = await runCli([
    ...convertArgs(join(root, "oa.jsonl"), join(root, "out"), fake.url),
    "--cot-preface",
    "<think>",
    "--cot-suffix",
    "</think>",
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(fake.stats.requests, 2);
  const thoughts = thoughtsFrom(fake.bodies);
  const [first, second] = parseJsonl(await Deno.readTextFile(join(root, "out/oa.jsonl"))) as Json[];

  const bonjour = thoughts.get("Bonjour !")!;
  assert.deepEqual(first.messages, [
    records[0].messages[0],
    {
      role: "assistant",
      content: [{ type: "text", text: `<think>\n${bonjour}\n</think>\n` }, {
        type: "text",
        text: "Bonjour !",
      }],
    },
  ]);
  const framing = { preface: "<think>", suffix: "</think>" };
  assert.deepEqual(second, withThoughts(records[1], thoughts, framing));
});

Deno.test("cli: broken lines go to rejects with line and reason, the rest is written", async () => {
  await using fake = await startFakeOpenAI();
  const good = JSON.stringify(SHAREGPT[0]);
  const lines = [
    "\uFEFF" + good, // 1: BOM
    "{not json", // 2
    "[1, 2]", // 3
    '{"id": 4}', // 4
    "", // 5: blank
    '{"conversations": [{"from": "human", "value": 5}]}', // 6
    '{"conversations": [{"from": "narrator", "value": "x"}]}', // 7
    '{"conversations": [{"from": "human", "value": "Hi"}]}', // 8: trailing human only
    '{"conversations": [{"from": "gpt", "value": "Hello!"}, {"from": "human", "value": "Bye"}]}', // 9
    good, // 10, CRLF and no final newline below
  ];
  const root = await tempTree({ "bad.jsonl": lines.join("\r\n") });
  const result = await runCli([
    ...convertArgs(join(root, "bad.jsonl"), join(root, "out"), fake.url),
  ]);
  assert.equal(result.code, 1, result.stderr);
  const written = parseJsonl(await Deno.readTextFile(join(root, "out/bad.jsonl"))) as Json[];
  assert.equal(written.length, 2);
  const rejects = parseJsonl(
    await Deno.readTextFile(join(root, "out/bad.rejects.jsonl")),
  ) as Json[];
  assert.deepEqual(rejects.map((r) => r.line), [2, 3, 4, 6, 7, 8, 9]);
  assert.ok(rejects.every((r) => r.file === join(root, "bad.jsonl")));
  const reasons = rejects.map((r) => String(r.reason));
  assert.match(reasons[0], /^not valid JSON/);
  assert.match(reasons[1], /not a JSON object/);
  assert.match(reasons[2], /no conversation/);
  assert.match(reasons[3], /turn 1: "value" must be a string/);
  assert.match(reasons[4], /turn 1: unknown role "narrator"/);
  assert.equal(reasons[5], "no assistant turn answers a user turn");
  assert.equal(reasons[6], "no assistant turn answers a user turn");
  assert.equal(rejects[0].raw, "{not json");
  assert.match(result.stderr, /2 written, 7 rejected, 1 skipped/);
  assert.equal(fake.stats.requests, 1, "identical records are generated once");
});

Deno.test("cli: gzip inputs are read as their text and written plain; a cut one keeps its start", async () => {
  await using fake = await startFakeOpenAI({ recordBodies: true });
  const root = await tempTree({});
  await Deno.mkdir(join(root, "in"));
  const text = SHAREGPT.map((record) => JSON.stringify(record)).join("\n") + "\n";
  await Deno.writeFile(join(root, "in/data.jsonl.gz"), gzipSync(text));
  const pretty = JSON.stringify(SHAREGPT.slice(0, 2), null, 2);
  await Deno.writeFile(join(root, "in/array.json.gz"), gzipSync(pretty));
  const many = Array.from({ length: 400 }, (_, i) =>
    JSON.stringify({
      id: i,
      conversations: [{ from: "human", value: `Q${i}?` }, { from: "gpt", value: `A${i}.` }],
    })).join("\n") + "\n";
  const gzip = gzipSync(many);
  await Deno.writeFile(join(root, "in/cut.jsonl.gz"), gzip.subarray(0, gzip.length >> 1));

  const result = await runCli(convertArgs(join(root, "in"), join(root, "out"), fake.url));
  assert.equal(result.code, 1, result.stderr);
  const thoughts = thoughtsFrom(fake.bodies);
  const data = parseJsonl(await Deno.readTextFile(join(root, "out/data.jsonl")));
  assert.deepEqual(data, SHAREGPT.map((record) => withThoughts(record, thoughts)));
  const array = JSON.parse(await Deno.readTextFile(join(root, "out/array.json")));
  assert.deepEqual(array, SHAREGPT.slice(0, 2).map((record) => withThoughts(record, thoughts)));
  await assert.rejects(() => Deno.stat(join(root, "out/data.jsonl.gz")), Deno.errors.NotFound);

  // The cut file: every line before the break is written (or rejected, if the break cut it),
  // and one reject on the next line says the rest could not be read.
  const written = parseJsonl(await Deno.readTextFile(join(root, "out/cut.jsonl"))) as Json[];
  const rejects = parseJsonl(
    await Deno.readTextFile(join(root, "out/cut.rejects.jsonl")),
  ) as Json[];
  const fault = rejects.at(-1)!;
  assert.equal(fault.file, join(root, "in/cut.jsonl.gz"));
  assert.match(
    String(fault.reason),
    /^the gzip data breaks off after \d+ bytes \(unexpected end of file\): nothing after it could be read$/,
  );
  assert.ok(written.length > 50, `${written.length} records before the break`);
  assert.deepEqual(written.map((record) => record.id), [...written.keys()]);
  assert.equal(written.length + rejects.length - 1, Number(fault.line) - 1);
  assert.match(
    result.stderr,
    new RegExp(`${written.length + 5} written, ${rejects.length} rejected`),
  );

  // Gzip on stdin is read too.
  const piped = await runCli(["-", "--base-url", fake.url, "--model", "m", "-q"], {
    stdin: gzipSync(text),
  });
  assert.equal(piped.code, 0, piped.stderr);
  assert.deepEqual(parseJsonl(piped.stdout), data);
});

Deno.test("cli: a .jsonl file holding a JSON array or pretty-printed objects is read as such, written as JSONL", async () => {
  await using fake = await startFakeOpenAI({ recordBodies: true });
  const lines = SHAREGPT.map((record) => JSON.stringify(record));
  const root = await tempTree({
    // A list dumped with one record a line and the brackets and commas kept, then a stray line.
    "in/array.jsonl": `[\n${lines.slice(0, 2).join(",\n")}\n]\noops\n${lines[2]}\n`,
    "in/pretty.jsonl": SHAREGPT.slice(0, 2).map((record) => JSON.stringify(record, null, 2))
      .join("\n"),
  });
  const result = await runCli(convertArgs(join(root, "in"), join(root, "out"), fake.url));
  assert.equal(result.code, 1, result.stderr);
  const thoughts = thoughtsFrom(fake.bodies);
  const array = parseJsonl(await Deno.readTextFile(join(root, "out/array.jsonl")));
  assert.deepEqual(array, SHAREGPT.slice(0, 3).map((record) => withThoughts(record, thoughts)));
  const rejects = parseJsonl(await Deno.readTextFile(join(root, "out/array.rejects.jsonl")));
  assert.deepEqual(
    rejects.map((reject) => {
      const { line, reason, raw } = reject as Json;
      return { line, reason, raw };
    }),
    [{ line: 5, reason: "unexpected content after the JSON array", raw: "oops" }],
  );
  const pretty = parseJsonl(await Deno.readTextFile(join(root, "out/pretty.jsonl")));
  assert.deepEqual(pretty, SHAREGPT.slice(0, 2).map((record) => withThoughts(record, thoughts)));
});

Deno.test("cli: integer-like keys keep their place, in JSONL and in a JSON array file", async () => {
  await using fake = await startFakeOpenAI({ recordBodies: true });
  // JavaScript lists keys like "2024" first: each record is written back as it came, but its
  // answers.
  const records = [
    '{"id":"r1","b":1,"2024":"y","scores":{"10":0.5,"2":0.1},"conversations":[' +
    '{"from":"human","value":"Name a year."},{"from":"gpt","value":"1999.","7":{"z":1,"0":2}}]}',
    '{"messages":[{"role":"user","content":"Hi?","1":1},' +
    '{"role":"assistant","content":[{"type":"text","text":"Hello.","5":"x"}],"2":1.50}],' +
    '"id":12345678901234567890,"0":null}',
  ];
  const pretty = "[\n" +
    records.map((record) => "  " + record.replaceAll('":', '": ')).join(",\n") +
    "\n]\n";
  const root = await tempTree({
    "in/keys.jsonl": records.join("\n") + "\n",
    "in/array.json": pretty,
  });
  const result = await runCli(convertArgs(join(root, "in"), join(root, "out"), fake.url));
  assert.equal(result.code, 0, result.stderr);
  const thoughts = thoughtsFrom(fake.bodies);
  const composed = (thought: string, answer: string) =>
    JSON.stringify(`Thought Process:\n${thought}\n\nAnswer:\n${answer}`);
  const expected = [
    records[0].replace('"value":"1999."', `"value":${composed(thoughts.get("1999.")!, "1999.")}`),
    records[1].replace(
      '"content":[',
      `"content":[{"type":"text","text":${composed(thoughts.get("Hello.")!, "")}},`,
    ),
  ];
  assert.equal(await Deno.readTextFile(join(root, "out/keys.jsonl")), expected.join("\n") + "\n");
  assert.equal(
    await Deno.readTextFile(join(root, "out/array.json")),
    "[\n" + expected.join(",\n") + "\n]\n",
  );
});

/** Conversations as bare turn lists, as `json.dumps(messages)` writes them. */
const BARE: Json[][] = [
  [
    { from: "system", value: "You are terse." },
    { from: "human", value: "Capital of Italy?", lang: "en" },
    { from: "gpt", value: "Rome.", score: 1 },
  ],
  [
    { role: "user", content: "3+4?" },
    { role: "assistant", content: "7.", name: "calc" },
    { role: "user", content: "And 5+6?" },
    { role: "assistant", content: "11." },
  ],
];

Deno.test("cli: a .jsonl of bare turn lists is read line by line and written as bare arrays", async () => {
  await using fake = await startFakeOpenAI({ recordBodies: true });
  const ping = [{ role: "user", content: "Ping?" }, { role: "assistant", content: "Pong." }];
  const lines = [
    JSON.stringify(BARE[0]),
    JSON.stringify(BARE[1]),
    '{"from": "human", "value": "Hi"}', // 3: one turn
    '[{"from": "human", "value": "Hi"}, {"from": "gpt", "value": 7}]', // 4
    JSON.stringify(ping),
  ];
  const root = await tempTree({ "chats.jsonl": lines.join("\n") + "\n" });
  const result = await runCli(convertArgs(join(root, "chats.jsonl"), join(root, "out"), fake.url));
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /3 written, 2 rejected, 0 skipped/);
  assert.equal(fake.stats.requests, 4, "one call per answer");

  const thoughts = thoughtsFrom(fake.bodies);
  const written = parseJsonl(await Deno.readTextFile(join(root, "out/chats.jsonl"))) as Json[][];
  assert.deepEqual(written, [...BARE, ping].map((turns) => turnsWithThoughts(turns, thoughts)));
  assert.ok(written.every(Array.isArray), "each line is still a bare array");
  assert.match(String(written[0][2].value), /^Thought Process:\n[^]+\n\nAnswer:\nRome\.$/);
  assert.deepEqual(Object.keys(written[0][1]), ["from", "value", "lang"]);

  const rejects = parseJsonl(await Deno.readTextFile(join(root, "out/chats.rejects.jsonl")));
  assert.deepEqual(
    rejects.map((reject) => [(reject as Json).line, (reject as Json).reason]),
    [
      [
        3,
        "one turn, not a conversation: a record is a whole list of {from, value} turns, as a " +
        'JSON array on one line or under "conversations" or "messages"',
      ],
      [4, 'turn 2: "value" must be a string (found a number)'],
    ],
  );
});

Deno.test("cli: a .json array of turn lists is written back as an array, a .json of lines as lines", async () => {
  await using fake = await startFakeOpenAI({ recordBodies: true });
  const root = await tempTree({
    "in/pretty.json": JSON.stringify(BARE, null, 2),
    "in/flat.json": JSON.stringify(BARE),
    "in/lines.json": BARE.map((turns) => JSON.stringify(turns)).join("\n") + "\n",
  });
  const result = await runCli(convertArgs(join(root, "in"), join(root, "out"), fake.url));
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /6 written, 0 rejected, 0 skipped/);
  const thoughts = thoughtsFrom(fake.bodies);
  const expected = BARE.map((turns) => turnsWithThoughts(turns, thoughts));
  for (const name of ["pretty.json", "flat.json"]) {
    const text = await Deno.readTextFile(join(root, "out", name));
    assert.deepEqual(JSON.parse(text), expected, name);
  }
  const lines = await Deno.readTextFile(join(root, "out/lines.json"));
  assert.equal(lines.trimEnd().split("\n").length, 2, "one bare array a line, as read");
  assert.deepEqual(parseJsonl(lines), expected);
});

Deno.test("cli: bare turn lists on stdin come out as bare arrays on stdout", async () => {
  await using fake = await startFakeOpenAI({ recordBodies: true });
  const result = await runCli(["-", "--base-url", fake.url, "--model", "m", "-q"], {
    stdin: BARE.map((turns) => JSON.stringify(turns)).join("\r\n"),
  });
  assert.equal(result.code, 0, result.stderr);
  const thoughts = thoughtsFrom(fake.bodies);
  assert.deepEqual(
    parseJsonl(result.stdout),
    BARE.map((turns) => turnsWithThoughts(turns, thoughts)),
  );
});

Deno.test("cli: a UTF-16 file (Windows PowerShell 5's redirect) is read as its text, written UTF-8", async () => {
  await using fake = await startFakeOpenAI({ recordBodies: true });
  const text = SHAREGPT.map((record) => JSON.stringify(record)).join("\n") + "\r\n";
  const bytes = new Uint8Array(2 + 2 * text.length);
  bytes.set([0xff, 0xfe]);
  for (let i = 0; i < text.length; i++) {
    new DataView(bytes.buffer).setUint16(2 + 2 * i, text.charCodeAt(i), true);
  }
  const root = await tempTree({});
  await Deno.writeFile(join(root, "windows.jsonl"), bytes);
  const result = await runCli(
    convertArgs(join(root, "windows.jsonl"), join(root, "out"), fake.url),
  );
  assert.equal(result.code, 0, result.stderr);
  const written = await Deno.readTextFile(join(root, "out/windows.jsonl"));
  const thoughts = thoughtsFrom(fake.bodies);
  assert.deepEqual(parseJsonl(written), SHAREGPT.map((record) => withThoughts(record, thoughts)));
});

Deno.test("cli: a named pipe, as <(command) gives, is read once and every record written", async () => {
  await using fake = await startFakeOpenAI({ recordBodies: true });
  const root = await tempTree({});
  const text = SHAREGPT.map((record) => JSON.stringify(record)).join("\n") + "\n";
  for (
    const [name, bytes] of [["plain", new TextEncoder().encode(text)], [
      "gzip",
      gzipSync(text),
    ]] as const
  ) {
    const fifo = join(root, `${name}.jsonl`);
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
    const child = cliCommand(convertArgs(fifo, join(root, "out"), fake.url)).spawn();
    // A CLI that opens the pipe twice waits for a second writer forever: fail, do not hang.
    const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    // Opening a pipe to write waits for its reader: the CLI.
    let wrote = false;
    const writing = Deno.writeFile(fifo, bytes).then(() => void (wrote = true));
    const result = await child.output();
    clearTimeout(killer);
    if (!wrote) (await Deno.open(fifo)).close(); // be the reader the writer still waits for
    await writing;
    assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
    const written = parseJsonl(await Deno.readTextFile(join(root, `out/${name}.jsonl`)));
    const thoughts = thoughtsFrom(fake.bodies);
    assert.deepEqual(written, SHAREGPT.map((record) => withThoughts(record, thoughts)), name);
  }
});

Deno.test("cli: stdin to stdout, rejects to --rejects", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({});
  const input = JSON.stringify(SHAREGPT[0]) + "\nnope\n";
  const result = await runCli(
    ["-", "--base-url", fake.url, "--model", "m", "--rejects", join(root, "r.jsonl"), "-q"],
    { stdin: input },
  );
  assert.equal(result.code, 1, result.stderr);
  const out = parseJsonl(result.stdout) as Json[];
  assert.equal(out.length, 1);
  assert.equal(out[0].id, "a1");
  const rejects = parseJsonl(await Deno.readTextFile(join(root, "r.jsonl"))) as Json[];
  assert.deepEqual(rejects.map((r) => [r.file, r.line]), [["-", 2]]);
});

Deno.test("cli: --rejects with file inputs says it is for stdin only, and where their rejects go", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({ "in.jsonl": JSON.stringify(SHAREGPT[0]) + "\nnot json\n" });
  const result = await runCli([
    ...convertArgs(join(root, "in.jsonl"), join(root, "out"), fake.url),
    "-q",
    "--rejects",
    join(root, "mine.jsonl"),
  ]);
  assert.equal(result.code, 1, result.stderr);
  assert.match(
    result.stderr,
    /^warning: --rejects ".*mine\.jsonl" is for stdin only; the rejects of a file go beside its output, as NAME\.rejects\.jsonl\n$/,
  );
  assert.equal(parseJsonl(await Deno.readTextFile(join(root, "out/in.rejects.jsonl"))).length, 1);
});

Deno.test("cli: a dry run leaves an earlier debug log as it was", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({ "in.jsonl": JSON.stringify(SHAREGPT[0]) + "\n" });
  const debugLog = join(root, "debug.jsonl");
  const before = '{"previous":"debug log"}\n';
  await Deno.writeTextFile(debugLog, before);
  const result = await runCli([
    ...convertArgs(join(root, "in.jsonl"), join(root, "out"), fake.url),
    "--dry-run",
    "--debug-log",
    debugLog,
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(await Deno.readTextFile(debugLog), before);
  const left = (await Array.fromAsync(Deno.readDir(root))).map((entry) => entry.name).sort();
  assert.deepEqual(left, ["debug.jsonl", "in.jsonl"]);
  assert.equal(fake.stats.requests, 0);
});

Deno.test("cli: with stdin, a clean run removes the --rejects file an earlier run left; a dry run keeps it", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({});
  const rejects = join(root, "r.jsonl");
  const args = ["-", "--base-url", fake.url, "--model", "m", "-q", "--rejects", rejects];
  const good = JSON.stringify(SHAREGPT[0]) + "\n";
  const first = await runCli(args, { stdin: good + "nope\n" });
  assert.equal(first.code, 1, first.stderr);
  const old = await Deno.readTextFile(rejects);
  assert.equal(parseJsonl(old).length, 1);
  // A dry run writes and removes nothing, whatever it finds.
  for (const stdin of [good, good + "nope\nnope\n"]) {
    const dry = await runCli([...args, "--dry-run"], { stdin });
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(await Deno.readTextFile(rejects), old);
  }
  const clean = await runCli(args, { stdin: good });
  assert.equal(clean.code, 0, clean.stderr);
  assert.deepEqual(await Array.fromAsync(Deno.readDir(root)), []);
});

Deno.test("cli: a JSON array on stdin is read element by element and written as JSONL", async () => {
  await using fake = await startFakeOpenAI();
  const result = await runCli(["-", "--base-url", fake.url, "--model", "m", "-q"], {
    stdin: JSON.stringify(SHAREGPT.slice(0, 2), null, 2),
  });
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.trimEnd().split("\n");
  assert.deepEqual(lines.map((line) => (JSON.parse(line) as Json).id), ["a1", SHAREGPT[1].id]);
});

Deno.test("cli: a rerun on its own output keeps every answer and calls nothing", async () => {
  await using fake = await startFakeOpenAI();
  const lines = SHAREGPT.map((record) => JSON.stringify(record)).join("\n") + "\n";
  const root = await tempTree({ "in/data.jsonl": lines });
  const first = await runCli(convertArgs(join(root, "in"), join(root, "once"), fake.url));
  assert.equal(first.code, 0, first.stderr);
  const calls = fake.stats.requests;
  assert.equal(calls, 4);
  const once = await Deno.readTextFile(join(root, "once/data.jsonl"));

  // --no-cache: nothing may come back from a cache; the answers themselves say they are done.
  const args = [...convertArgs(join(root, "once"), join(root, "twice"), fake.url), "--no-cache"];
  const second = await runCli(args);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(fake.stats.requests, calls);
  assert.equal(await Deno.readTextFile(join(root, "twice/data.jsonl")), once);
  assert.match(second.stderr, /4 answers already had a thought, kept/);
  const usage = JSON.parse(await Deno.readTextFile(join(root, "twice/usage.json")));
  assert.equal(usage.keptThoughts, 4);
  assert.equal(usage.written, 3);
});

Deno.test("cli: a blank preface and suffix are warned about, as a rerun could not see the thoughts", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({ "in/data.jsonl": JSON.stringify(SHAREGPT[0]) + "\n" });
  const blank = ["--cot-preface", "", "--cot-suffix", " "];
  const first = await runCli([
    ...convertArgs(join(root, "in"), join(root, "once"), fake.url),
    ...blank,
  ]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /warning: --cot-preface and --cot-suffix are both blank/);
  const framed = await runCli(convertArgs(join(root, "in"), join(root, "framed"), fake.url));
  assert.equal(framed.code, 0, framed.stderr);
  assert.doesNotMatch(framed.stderr, /warning/);
});

Deno.test("cli: files a folder holds but cotfit does not read are named in a warning", async () => {
  await using fake = await startFakeOpenAI();
  const record = JSON.stringify(SHAREGPT[0]) + "\n";
  const root = await tempTree({
    "in/train.jsonl": record,
    "in/hard.rejects.jsonl": record,
    "in/usage.json": record,
    "in/more.parquet": "PAR1",
    "in/dataset_info.json": '{"features":{}}',
    "in/extra.ndjson": record,
  });
  const result = await runCli(convertArgs(join(root, "in"), join(root, "out"), fake.url));
  assert.equal(result.code, 0, result.stderr);
  const extra = await Deno.readTextFile(join(root, "out/extra.ndjson"));
  assert.equal(extra.trimEnd().split("\n").length, 1);
  assert.match(extra, /Thought Process/);
  assert.match(
    result.stderr,
    /warning: not read: .*dataset_info\.json": Hugging Face dataset metadata, not records/,
  );
  assert.match(
    result.stderr,
    /warning: not read: .*hard\.rejects\.jsonl", ".*usage\.json": .*pass one by name/,
  );
  assert.match(result.stderr, /warning: not read: .*more\.parquet": cotfit does not read Parquet/);
});

/** A folder of `files` JSONL files of `each` distinct one-turn records, `f1.jsonl`... */
async function shards(files: number, each: number): Promise<string> {
  const tree: Record<string, string> = {};
  for (let f = 1; f <= files; f++) {
    tree[`in/f${f}.jsonl`] = Array.from({ length: each }, (_, i) =>
      JSON.stringify({
        id: `${f}-${i}`,
        conversations: [{ from: "human", value: `Shard ${f}, item ${i}?` }, {
          from: "gpt",
          value: "Yes.",
        }],
      }) + "\n").join("");
  }
  return await tempTree(tree);
}

/** The ids written under `out`, file by file in name order. */
async function idsWritten(out: string): Promise<string[]> {
  const names = (await Array.fromAsync(Deno.readDir(out))).map((entry) => entry.name)
    .filter((name) => /^f\d+\.jsonl$/.test(name)).sort();
  const ids: string[] = [];
  for (const name of names) {
    for (const line of (await Deno.readTextFile(join(out, name))).split("\n")) {
      if (line) ids.push((JSON.parse(line) as { id: string }).id);
    }
  }
  return ids;
}

Deno.test("cli: --limit takes the run's first N records, across files, and reads no file past them", async () => {
  await using fake = await startFakeOpenAI();
  const root = await shards(4, 3);
  const args = [...convertArgs(join(root, "in"), join(root, "out"), fake.url), "--limit", "5"];
  const result = await runCli(args);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(await idsWritten(join(root, "out")), ["1-0", "1-1", "1-2", "2-0", "2-1"]);
  await assert.rejects(() => Deno.stat(join(root, "out/f3.jsonl")), Deno.errors.NotFound);
  assert.equal(fake.stats.requests, 5);
});

Deno.test("cli: --limit removes what an earlier run wrote for the files it does not read", async () => {
  await using fake = await startFakeOpenAI();
  const root = await shards(3, 3);
  const args = convertArgs(join(root, "in"), join(root, "out"), fake.url);
  assert.equal((await runCli(args)).code, 0);
  await Deno.writeTextFile(join(root, "out/f3.rejects.jsonl"), "{}\n");
  const limited = await runCli([...args, "--limit", "2"]);
  assert.equal(limited.code, 0, limited.stderr);
  // The folder now holds this run's records alone, as usage.json counts them.
  assert.deepEqual(await idsWritten(join(root, "out")), ["1-0", "1-1"]);
  const usage = JSON.parse(await Deno.readTextFile(join(root, "out/usage.json")));
  assert.equal(usage.written, 2);
  assert.deepEqual(
    (await Array.fromAsync(Deno.readDir(join(root, "out")))).map((e) => e.name).sort(),
    [".cotfit-cache.sqlite", "f1.jsonl", "usage.json"],
  );
  assert.match(
    limited.stderr,
    /note: removed ".*f2\.jsonl", ".*f3\.jsonl", ".*f3\.rejects\.jsonl": an earlier run's output/,
  );
});

Deno.test("cli: a second run into an output folder in use is refused before it calls or removes anything", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({ "in.jsonl": JSON.stringify(SHAREGPT[0]) + "\n" });
  const out = join(root, "out");
  // The first run's unfinished output, which a second run would take for a crash's leftover.
  await Deno.mkdir(out);
  await Deno.writeTextFile(join(out, "in.jsonl.partial"), "half");
  {
    using _first = lockOutputFolder(out);
    const second = await runCli(convertArgs(join(root, "in.jsonl"), out, fake.url));
    assert.equal(second.code, 2, second.stderr);
    assert.match(
      second.stderr,
      /^error: Cannot write ".*out": another cotfit run is writing to it: wait for it to end, or choose another -o\n$/,
    );
    assert.equal(await Deno.readTextFile(join(out, "in.jsonl.partial")), "half");
    assert.equal(fake.stats.requests, 0);
  }
  // Once the first is done, the folder is free, and a run leaves no lock behind.
  const later = await runCli(convertArgs(join(root, "in.jsonl"), out, fake.url));
  assert.equal(later.code, 0, later.stderr);
  await assert.rejects(Deno.stat(join(out, ".cotfit.lock")), Deno.errors.NotFound);
});

Deno.test("cli: calls past the open-file limit stop the run with exit 2 and what to change", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  // Calls last a while, so 200 connections are open at once against a limit of 100.
  await using fake = await startFakeOpenAI({ latencyMs: 300 });
  const lines = Array.from({ length: 300 }, (_, i) =>
    JSON.stringify({
      conversations: [{ from: "human", value: `q${i}` }, { from: "gpt", value: `a${i}` }],
    }));
  const root = await tempTree({ "in.jsonl": lines.join("\n") + "\n" });
  const args = [...convertArgs(join(root, "in.jsonl"), join(root, "out"), fake.url), "-q"];
  const deno = [Deno.execPath(), "run", "-A", MAIN, ...args, "--concurrency", "200", "--no-cache"];
  const output = await new Deno.Command("sh", {
    args: ["-c", 'ulimit -n 100 && exec "$@"', "sh", ...deno],
    stdout: "null",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 2, stderr);
  assert.match(
    stderr,
    /^error: too many open files: every call in flight holds a connection; lower --concurrency or raise this process's open-file limit \(ulimit -n\)$/m,
  );
  // Not taken for an outage: no call is retried.
  const usage = JSON.parse(await Deno.readTextFile(join(root, "out/usage.json")));
  assert.equal(usage.retries, 0);
  assert.ok(usage.failures["too many open files"] >= 1, JSON.stringify(usage.failures));
});

Deno.test("cli: no run file may be the output folder's lock, and a refused run leaves no folders it made", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({ "in.jsonl": JSON.stringify(SHAREGPT[0]) + "\n" });
  const out = join(root, "out");
  for (const flag of ["--cache", "--debug-log"]) {
    const result = await runCli([
      ...convertArgs(join(root, "in.jsonl"), out, fake.url),
      flag,
      join(out, ".cotfit.lock"),
    ]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      result.stderr,
      /^error: Cannot write ".*out\/\.cotfit\.lock": it is the output folder's lock file: choose another name\n$/,
    );
  }
  assert.equal(fake.stats.requests, 0);
  // A prompt refused at load: the output folder and the parent made for it are gone again.
  const prompt = join(root, "p.yaml");
  await Deno.writeTextFile(
    prompt,
    "system: 'as {{answer}}'\nuser_template: '{{user_message}} {{answer}}'\n",
  );
  const refused = await runCli([
    ...convertArgs(join(root, "in.jsonl"), join(root, "new", "sub"), fake.url),
    "--prompt",
    prompt,
  ]);
  assert.equal(refused.code, 2, refused.stderr);
  await assert.rejects(Deno.stat(join(root, "new")), Deno.errors.NotFound);
  await assert.rejects(Deno.stat(out), Deno.errors.NotFound);
});

Deno.test("cli: --sample picks N records out of all the files, the same ones for the same seed", async () => {
  await using fake = await startFakeOpenAI();
  const root = await shards(3, 10);
  const sample = async (out: string, seed: string) => {
    const args = [...convertArgs(join(root, "in"), join(root, out), fake.url), "--sample", "6"];
    const result = await runCli([...args, "--seed", seed]);
    assert.equal(result.code, 0, result.stderr);
    return await idsWritten(join(root, out));
  };
  const first = await sample("a", "1");
  assert.equal(first.length, 6);
  assert.equal(new Set(first).size, 6);
  assert.deepEqual(await sample("b", "1"), first);
  // Over five seeds the picks spread over the files, not six from each or all from the first.
  const files = new Set(first.map((id) => id.split("-")[0]));
  for (const seed of ["2", "3", "4", "5"]) {
    for (const id of await sample(`s${seed}`, seed)) files.add(id.split("-")[0]);
  }
  assert.deepEqual([...files].sort(), ["1", "2", "3"]);
});

Deno.test("cli: transient upstream errors and invalid thoughts are retried", async () => {
  const faults = ["rate_limit", "server_error", "no_tags", "invalid_json", "refusal"] as const;
  await using fake = await startFakeOpenAI({ script: (n) => faults[n - 1] });
  const root = await tempTree({ "one.jsonl": JSON.stringify(SHAREGPT[0]) + "\n" });
  const result = await runCli([
    ...convertArgs(join(root, "one.jsonl"), join(root, "out"), fake.url),
    "--retries",
    "5",
  ], { env: { COTFIT_RETRY_BASE_MS: "10" } });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(fake.stats.requests, 6);
  const [record] = parseJsonl(await Deno.readTextFile(join(root, "out/one.jsonl"))) as Json[];
  assert.match(JSON.stringify(record), /Thought Process:/);
});

Deno.test("cli: a turn that never gets a valid thought rejects its record with the reason", async () => {
  await using fake = await startFakeOpenAI({ script: () => "no_tags" });
  const root = await tempTree({ "one.jsonl": JSON.stringify(SHAREGPT[0]) + "\n" });
  const result = await runCli([
    ...convertArgs(join(root, "one.jsonl"), join(root, "out"), fake.url),
    "--retries",
    "2",
  ]);
  assert.equal(result.code, 1);
  assert.equal(fake.stats.requests, 3);
  const [reject] = parseJsonl(
    await Deno.readTextFile(join(root, "out/one.rejects.jsonl")),
  ) as Json[];
  assert.match(String(reject.reason), /^turn 2: no valid thought: no <thought_process> tags/);
  assert.equal(await Deno.readTextFile(join(root, "out/one.jsonl")), "");
});

Deno.test("cli: a 401 from the upstream stops the run at once with exit 2 and no output", async () => {
  await using fake = await startFakeOpenAI({ script: () => "unauthorized" });
  const records = Array.from({ length: 50 }, (_, i) => JSON.stringify({ ...SHAREGPT[0], id: i }));
  const root = await tempTree({ "many.jsonl": records.join("\n") });
  const result = await runCli([
    ...convertArgs(join(root, "many.jsonl"), join(root, "out"), fake.url),
    "--concurrency",
    "2",
  ], { env: { OPENAI_API_KEY: "sk-secret-123" } });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /error: .*401/);
  assert.ok(!result.stderr.includes("sk-secret-123"), "the key is never printed");
  assert.ok(fake.stats.requests <= 4, `stopped at once, made ${fake.stats.requests} calls`);
  await assert.rejects(() => Deno.stat(join(root, "out/many.jsonl")), Deno.errors.NotFound);
});

Deno.test("cli: a run the upstream stops midway still says, and records, what it spent", async () => {
  // The key is revoked after 6 calls: those were paid for.
  await using fake = await startFakeOpenAI({ script: (n) => n > 6 ? "unauthorized" : undefined });
  const records = Array.from({ length: 40 }, (_, i) =>
    JSON.stringify({
      conversations: [{ from: "human", value: `Is ${i} even?` }, { from: "gpt", value: "Maybe." }],
    }));
  const root = await tempTree({ "many.jsonl": records.join("\n") });
  const result = await runCli([
    ...convertArgs(join(root, "many.jsonl"), join(root, "out"), fake.url),
    "--concurrency",
    "1",
  ]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /^calls +6 /m);
  assert.match(result.stderr, /error: .*401.*\n$/);
  const usage = JSON.parse(await Deno.readTextFile(join(root, "out/usage.json")));
  assert.equal(usage.calls, 6);
  assert.match(usage.error, /401/);
  assert.equal(usage.interrupted, false);
});

Deno.test("cli: after a 401 midway, the counts say what the files on disk hold and the 401 is a failure", async () => {
  // a.jsonl is done after 3 calls; b.jsonl's first 3 records are done before the key is revoked.
  await using fake = await startFakeOpenAI({ script: (n) => n > 6 ? "unauthorized" : undefined });
  const record = (i: number) =>
    JSON.stringify({
      conversations: [{ from: "human", value: `Is ${i} odd?` }, { from: "gpt", value: "Maybe." }],
    });
  const root = await tempTree({
    "in/a.jsonl": [0, 1, 2].map(record).join("\n") + "\n",
    "in/b.jsonl": ["not json", ...[3, 4, 5, 6, 7].map(record)].join("\n") + "\n",
  });
  const result = await runCli([
    ...convertArgs(join(root, "in"), join(root, "out"), fake.url),
    "--concurrency",
    "1",
  ]);
  assert.equal(result.code, 2, result.stderr);
  assert.equal(
    (await Deno.readTextFile(join(root, "out/a.jsonl"))).trimEnd().split("\n").length,
    3,
  );
  assert.deepEqual(
    (await Array.fromAsync(Deno.readDir(join(root, "out")))).map((e) => e.name).sort(),
    [".cotfit-cache.sqlite", "a.jsonl", "usage.json"],
  );
  const usage = JSON.parse(await Deno.readTextFile(join(root, "out/usage.json")));
  assert.deepEqual([usage.written, usage.rejected, usage.discarded], [3, 0, 4]);
  // The refused call is a failure (a call already waiting for the slot may be refused too).
  assert.deepEqual(Object.keys(usage.failures), ["upstream 401"]);
  assert.ok(usage.failures["upstream 401"] >= 1);
  assert.match(
    result.stderr,
    /^records +3 written, 0 rejected, 0 skipped \(blank\), 4 done but discarded/m,
  );
});

Deno.test("cli: a run stopped midway names the outputs an earlier run left for the files it did not finish", async () => {
  const root = await shards(3, 3);
  const out = join(root, "out");
  {
    await using fake = await startFakeOpenAI();
    assert.equal((await runCli(convertArgs(join(root, "in"), out, fake.url))).code, 0);
  }
  // Again, another framing, no cache: the key is revoked during f2.jsonl.
  await using fake = await startFakeOpenAI({ script: (n) => n > 4 ? "unauthorized" : undefined });
  const result = await runCli([
    ...convertArgs(join(root, "in"), out, fake.url),
    "--no-cache",
    "--concurrency",
    "1",
    "--cot-preface",
    "Reasoning:",
    "-q",
  ]);
  assert.equal(result.code, 2, result.stderr);
  assert.match(
    result.stderr,
    /^note: ".*f2\.jsonl", ".*f3\.jsonl" are from an earlier run: this one stopped before writing them; run it again to replace them$/m,
  );
  assert.match(await Deno.readTextFile(join(out, "f1.jsonl")), /Reasoning:/);
});

Deno.test("cli: once the upstream refuses a call, no call still waiting for a slot is sent", async () => {
  await using fake = await startFakeOpenAI({
    latencyMs: 50,
    script: (n) => n > 20 ? "unauthorized" : undefined,
  });
  const lines = Array.from({ length: 100 }, (_, i) =>
    JSON.stringify({
      conversations: [{ from: "human", value: `q${i}` }, { from: "gpt", value: `a${i}` }],
    }));
  const root = await tempTree({ "in.jsonl": lines.join("\n") + "\n" });
  const result = await runCli([
    ...convertArgs(join(root, "in.jsonl"), join(root, "out"), fake.url),
    "--concurrency",
    "8",
    "--no-cache",
    "-q",
  ]);
  assert.equal(result.code, 2, result.stderr);
  // 20 answered, then the refused call and at most the 7 already in flight beside it.
  assert.ok(fake.stats.requests <= 28, `${fake.stats.requests} calls`);
});

Deno.test("cli: an output or cache that cannot be created exits 2 with the reason", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({ "in.jsonl": JSON.stringify(SHAREGPT[0]) + "\n", "file": "" });
  // A directory under a file can never be made, even by root.
  const cases: [string, string[], RegExp][] = [
    [join(root, "out"), ["--cache", join(root, "file", "c.sqlite")], /^error: Cannot open cache "/],
    [join(root, "file", "out"), ["--no-cache"], /^error: Cannot write "/],
  ];
  for (const [output, extra, expected] of cases) {
    const result = await runCli([
      ...convertArgs(join(root, "in.jsonl"), output, fake.url),
      ...extra,
    ]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, expected);
    assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
  }
  // The refused run left no output folder behind.
  await assert.rejects(Deno.stat(join(root, "out")), Deno.errors.NotFound);
  assert.equal(fake.stats.requests, 0);
});

Deno.test("cli: a config or prompt file that is not UTF-8 is refused, naming the line; UTF-16 is read", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({ "in.jsonl": JSON.stringify(SHAREGPT[0]) + "\n" });
  const args = convertArgs(join(root, "in.jsonl"), join(root, "out"), fake.url);
  const latin1 = (text: string) => new Uint8Array([...text].map((c) => c.charCodeAt(0)));
  // A preface saved as Latin-1 would otherwise reach every answer as "R\uFFFDflexion".
  await Deno.writeFile(join(root, "c.yaml"), latin1('output:\n  cot_preface: "R\xe9flexion :"\n'));
  const config = await runCli([...args, "--config", join(root, "c.yaml")]);
  assert.equal(config.code, 2);
  assert.match(
    config.stderr,
    /^error: Cannot read config ".*c\.yaml": not UTF-8 text \(line 2, byte 26\): save it as UTF-8\n/,
  );
  const prompt =
    (await Deno.readTextFile(new URL("../prompts/thought_process.yaml", import.meta.url)))
      .replace("You recover hidden reasoning.", "Vous retrouvez le raisonnement cach\xe9.");
  await Deno.writeFile(join(root, "p.yaml"), latin1(prompt));
  const latin = await runCli([...args, "--prompt", join(root, "p.yaml")]);
  assert.equal(latin.code, 2);
  assert.match(
    latin.stderr,
    /^error: Cannot read prompt file ".*p\.yaml": not UTF-8 text \(line \d+, byte \d+\)/,
  );
  assert.equal(fake.stats.requests, 0);
  // Saved as UTF-16 with its byte order mark, as Windows editors may, it is read.
  const utf16 = new Uint8Array(2 + prompt.length * 2);
  utf16.set([0xff, 0xfe]);
  for (let i = 0; i < prompt.length; i++) {
    utf16[2 + 2 * i] = prompt.charCodeAt(i) & 0xff;
    utf16[3 + 2 * i] = prompt.charCodeAt(i) >> 8;
  }
  await Deno.writeFile(join(root, "p16.yaml"), utf16);
  const wide = await runCli([
    ...args,
    "--prompt",
    join(root, "p16.yaml"),
    "--debug-log",
    join(root, "d.jsonl"),
  ]);
  assert.equal(wide.code, 0, wide.stderr);
  assert.match(
    await Deno.readTextFile(join(root, "d.jsonl")),
    /Vous retrouvez le raisonnement caché\./,
  );
});

Deno.test("cli: a prompt file that cannot be read exits 2 with its name, before any call", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({ "in.jsonl": JSON.stringify(SHAREGPT[0]) + "\n", "dir/x": "" });
  const missing = join(root, "nope.yaml");
  await Deno.writeTextFile(join(root, "cotfit.yaml"), `generation:\n  prompt: ${missing}\n`);
  for (
    const [prompt, extra] of [
      [missing, ["--prompt", missing]],
      [missing, ["--config", join(root, "cotfit.yaml")]],
      [join(root, "dir"), ["--prompt", join(root, "dir")]],
    ]
  ) {
    const result = await runCli([
      ...convertArgs(join(root, "in.jsonl"), join(root, "out"), fake.url),
      ...extra,
      "--debug-log",
      join(root, "debug.jsonl"),
    ]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(`^error: Cannot read prompt file ${RegExp.escape(JSON.stringify(prompt))}: .+\n$`),
    );
    // Neither the output nor the debug log was begun.
    assert.deepEqual((await Array.fromAsync(Deno.readDir(root))).map((e) => e.name).sort(), [
      "cotfit.yaml",
      "dir",
      "in.jsonl",
    ]);
  }
  assert.equal(fake.stats.requests, 0);
});

Deno.test(
  "cli: an input that cannot be read stops the run before any call, with exit 2 and its name",
  {
    ignore: Deno.build.os !== "linux",
  },
  async () => {
    await using fake = await startFakeOpenAI();
    const record = JSON.stringify(SHAREGPT[0]) + "\n";
    const root = await tempTree({ "d/a.jsonl": record, "d/c.jsonl": record });
    // Unreadable even by root, which reads a file whatever its mode (see tests/inputs_test.ts).
    await Deno.symlink("/proc/self/mem", join(root, "d/b.jsonl"));
    for (const input of [join(root, "d"), join(root, "d/b.jsonl")]) {
      for (const quiet of [[], ["-q"]]) {
        const result = await runCli([...convertArgs(input, join(root, "out"), fake.url), ...quiet]);
        assert.equal(result.code, 2, result.stderr);
        const name = JSON.stringify(join(root, "d/b.jsonl"));
        assert.match(
          result.stderr,
          new RegExp(`^error: Cannot read input ${RegExp.escape(name)}: .+\n$`),
        );
      }
    }
    assert.equal(fake.stats.requests, 0);
    await assert.rejects(() => Deno.stat(join(root, "out")), Deno.errors.NotFound);
  },
);

Deno.test(
  "cli: an input that turns unreadable mid-run stops it with exit 2 and its name, the files before it kept",
  {
    ignore: Deno.build.os !== "linux",
  },
  async () => {
    const record = JSON.stringify(SHAREGPT[0]) + "\n";
    const root = await tempTree({ "d/a.jsonl": record, "d/c.jsonl": record });
    const b = join(root, "d/b.jsonl");
    // Replaced by a directory while a.jsonl is converted: it opens, then its first read fails.
    let swap = false;
    await using fake = await startFakeOpenAI({
      script() {
        if (swap) {
          swap = false;
          Deno.removeSync(b);
          Deno.mkdirSync(b);
        }
        return undefined;
      },
    });
    // Quiet, b.jsonl fails when the run first looks at it; otherwise the progress total has looked
    // already, and it fails in the conversion's own read.
    for (const quiet of [true, false]) {
      await Deno.remove(b, { recursive: true }).catch(() => {});
      await Deno.writeTextFile(b, record);
      swap = true;
      const out = join(root, `out-${quiet}`);
      const result = await runCli([
        ...convertArgs(join(root, "d"), out, fake.url),
        ...(quiet ? ["-q"] : []),
      ]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(
        result.stderr,
        new RegExp(`(^|\n)error: Cannot read input ${RegExp.escape(JSON.stringify(b))}: .+\n$`),
      );
      assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
      assert.equal(parseJsonl(await Deno.readTextFile(join(out, "a.jsonl"))).length, 1);
      const left = (await Array.fromAsync(Deno.readDir(out))).map((entry) => entry.name).sort();
      // b's output is not written; the usage file says why the run stopped.
      assert.deepEqual(left.filter((name) => !name.startsWith(".cotfit-cache")), [
        "a.jsonl",
        "usage.json",
      ]);
      const usage = JSON.parse(await Deno.readTextFile(join(out, "usage.json")));
      assert.match(usage.error, /Cannot read input/);
    }
  },
);

Deno.test("cli: an output that is its input through a link or a hard link is refused, the input kept", async () => {
  await using fake = await startFakeOpenAI();
  const record = JSON.stringify(SHAREGPT[0]) + "\n";
  const root = await tempTree({ "same/x.jsonl": record, "same/h.jsonl": record });
  await Deno.mkdir(join(root, "other"));
  await Deno.symlink(join(root, "same/x.jsonl"), join(root, "other/x.jsonl"));
  await Deno.link(join(root, "same/h.jsonl"), join(root, "other/h.jsonl"));
  for (const name of ["x.jsonl", "h.jsonl"]) {
    const input = join(root, "other", name);
    const result = await runCli([...convertArgs(input, join(root, "same"), fake.url), "-q"]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(
        `^error: output ${RegExp.escape(JSON.stringify(join(root, "same", name)))} would ` +
          `overwrite its input ${
            RegExp.escape(JSON.stringify(input))
          }, the same file through a link`,
      ),
    );
    assert.equal(await Deno.readTextFile(join(root, "same", name)), record);
  }
  assert.equal(fake.stats.requests, 0);
});

Deno.test(
  "cli: a --rejects or --debug-log that is an input or another file of the run is refused before any call, the input kept",
  { ignore: Deno.build.os === "windows" }, // `< FILE` goes through sh
  async () => {
    await using fake = await startFakeOpenAI();
    const record = JSON.stringify(SHAREGPT[0]) + "\n";
    const rejected = JSON.stringify({ conversations: [{ from: "human", value: "q" }] }) + "\n";
    const root = await tempTree({ "a.jsonl": record, "in.jsonl": record + rejected });
    const [a, stdinFile, out] = [join(root, "a.jsonl"), join(root, "in.jsonl"), join(root, "out")];
    const q = JSON.stringify;
    const cases: [string[], { stdin?: string; stdinFile?: string }, string][] = [
      [
        ["-", a, "-o", out, "--rejects", a],
        { stdin: record + rejected },
        `rejects file would overwrite input ${q(a)}: choose another --rejects`,
      ],
      [
        ["-", a, "-o", out, "--rejects", join(out, "a.jsonl")],
        { stdin: record + rejected },
        `rejects file ${q(join(out, "a.jsonl"))} is also the output of input ${q(a)}: ` +
        "choose another --rejects",
      ],
      [
        ["-", "--rejects", stdinFile],
        { stdinFile },
        `rejects file ${q(stdinFile)} would overwrite the file on stdin: choose another --rejects`,
      ],
      [
        [a, "-o", out, "--debug-log", a],
        {},
        `debug log would overwrite input ${q(a)}: choose another --debug-log`,
      ],
      [
        [a, "-o", out, "--debug-log", join(out, "a.jsonl")],
        {},
        `debug log ${q(join(out, "a.jsonl"))} is also the output of input ${q(a)}: ` +
        "choose another --debug-log",
      ],
      [
        ["-", "--debug-log", stdinFile],
        { stdinFile },
        `debug log ${q(stdinFile)} would overwrite the file on stdin: choose another --debug-log`,
      ],
    ];
    for (const [args, stdin, message] of cases) {
      const result = await runCli([...args, "--base-url", fake.url, "--model", "m"], stdin);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, new RegExp(`^error: ${RegExp.escape(message)}\n`));
      assert.equal(await Deno.readTextFile(a), record);
      assert.equal(await Deno.readTextFile(stdinFile), record + rejected);
      assert.deepEqual((await Array.fromAsync(Deno.readDir(root))).map((e) => e.name).sort(), [
        "a.jsonl",
        "in.jsonl",
      ]);
    }
    assert.equal(fake.stats.requests, 0);
  },
);

Deno.test("cli: a --debug-log or --rejects that is a directory exits 2 before any call", async () => {
  await using fake = await startFakeOpenAI();
  const record = JSON.stringify(SHAREGPT[0]) + "\n";
  const root = await tempTree({ "a.jsonl": record, "dir/x": "" });
  const dir = join(root, "dir");
  for (
    const [args, flag, what] of [
      [
        [join(root, "a.jsonl"), "-o", join(root, "out"), "--debug-log", dir],
        "--debug-log",
        "debug log",
      ],
      [["-", "--rejects", dir], "--rejects", "rejects file"],
    ]
  ) {
    const result = await runCli([...args, "--base-url", fake.url, "--model", "m"], {
      stdin: record + "not json\n",
    });
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(
        `^error: ${what} ${RegExp.escape(JSON.stringify(dir))} is a directory: ` +
          `choose another ${flag}\n`,
      ),
    );
    assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
    assert.deepEqual((await Array.fromAsync(Deno.readDir(root))).map((e) => e.name).sort(), [
      "a.jsonl",
      "dir",
    ]);
  }
  assert.equal(fake.stats.requests, 0);
});

Deno.test("cli: bad usage exits 2 with a one-line reason", async () => {
  const noModel = await runCli(["in.jsonl", "-o", "out"]);
  assert.equal(noModel.code, 2);
  assert.match(noModel.stderr, /^error: .*model/);
  const badFlag = await runCli(["--concurrency", "zero", "--model", "m", "x.jsonl", "-o", "o"]);
  assert.equal(badFlag.code, 2);
  assert.match(badFlag.stderr, /--concurrency/);
  const missing = await runCli(["/nonexistent/in.jsonl", "-o", "/tmp/x", "--model", "m"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /Cannot read input "\/nonexistent\/in.jsonl"/);
  const help = await runCli(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--history-tokens/);
});

Deno.test("the tasks that run cotfit all cap the heap with the flags the bench measures", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const flagsOf = (task: string) => String(config.tasks[task]).match(/--v8-flags=\S+/)?.[0];
  const flags = flagsOf("start");
  assert.match(flags ?? "", /^--v8-flags=--max-old-space-size=\d+,--max-semi-space-size=\d+$/);
  for (const task of ["demo", "serve", "compile"]) assert.equal(flagsOf(task), flags, task);
});

Deno.test("cli: --debug-log has one line per call naming its file, line and turn, and no API key", async () => {
  await using fake = await startFakeOpenAI();
  const key = "sk-debug-log-secret-123";
  const root = await tempTree({
    "in/a.jsonl": JSON.stringify(SHAREGPT[0]) + "\n",
    "in/b.jsonl": "\n" + JSON.stringify(SHAREGPT[1]) + "\n",
  });
  const debugLog = join(root, "debug.jsonl");
  const result = await runCli(
    [
      ...convertArgs(join(root, "in"), join(root, "out"), fake.url),
      "-q",
      "--no-cache",
      "--debug-log",
      debugLog,
    ],
    { env: { OPENAI_API_KEY: key } },
  );
  assert.equal(result.code, 0, result.stderr);
  const text = await Deno.readTextFile(debugLog);
  assert.ok(!text.includes(key));
  const calls = (parseJsonl(text) as Json[]).toSorted((x, y) =>
    String(x.file).localeCompare(String(y.file)) || Number(x.turn) - Number(y.turn)
  );
  // b.jsonl's record is on its line 2, with two answers (turns 3 and 5).
  assert.deepEqual(calls.map((call) => [call.file, call.line, call.turn, call.attempt]), [
    [join(root, "in/a.jsonl"), 1, 2, 1],
    [join(root, "in/b.jsonl"), 2, 3, 1],
    [join(root, "in/b.jsonl"), 2, 5, 1],
  ]);
  for (const call of calls) {
    assert.equal(typeof call.thought, "string");
    assert.ok(Array.isArray(call.messages) && call.messages.length > 0);
    assert.equal(typeof call.reply, "string");
  }
});
