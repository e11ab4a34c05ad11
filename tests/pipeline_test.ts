import assert from "node:assert/strict";
import { constants, gunzipSync, gzipSync } from "node:zlib";
import type { ThoughtWriter } from "../src/generate.ts";
import { MAX_REJECT_RAW_CHARS, rephraseStream } from "../src/pipeline.ts";
import { loadTokenizer } from "../src/tokenizer.ts";
import type { Outcome, ThoughtRequest } from "../src/types.ts";

const FRAMING = { preface: "Thought:", suffix: "Answer:" };

/**
 * Runs records (objects, or raw lines as strings) through the pipeline; the writer records every
 * request and thinks "Ok.".
 */
async function rephrase(
  records: unknown[],
  options: {
    historyTokens?: number;
    loadTokenizer?: typeof loadTokenizer;
    onKeptThought?: (line: number) => void;
  } = {},
): Promise<{ outcomes: Outcome[]; requests: ThoughtRequest[] }> {
  const requests: ThoughtRequest[] = [];
  const writeThought: ThoughtWriter = (request) => {
    requests.push(request);
    return Promise.resolve({ ok: true, thought: "Ok." });
  };
  const pipeline = rephraseStream({ framing: FRAMING, writeThought, ...options });
  const input = records
    .map((record) => (typeof record === "string" ? record : JSON.stringify(record)) + "\n")
    .join("");
  ReadableStream.from([new TextEncoder().encode(input)]).pipeTo(pipeline.writable);
  return { outcomes: await Array.fromAsync(pipeline.readable), requests };
}

/** loadTokenizer, counting its calls. */
function countingLoader(): { load: typeof loadTokenizer; loads: () => number } {
  let loads = 0;
  return {
    load() {
      loads++;
      return loadTokenizer();
    },
    loads: () => loads,
  };
}

function chat(...texts: string[]): { conversations: { from: string; value: string }[] } {
  return {
    conversations: texts.map((value, i) => ({ from: i % 2 === 0 ? "human" : "gpt", value })),
  };
}

Deno.test("rephraseStream() loads the tokenizer for a long history and trims it exactly", async () => {
  const loader = countingLoader();
  // "hello " x 99 is 100 o200k tokens: each history turn costs 104, so 416 tokens keep 4 of 6.
  const long = "hello ".repeat(99);
  const { outcomes, requests } = await rephrase(
    [chat(long, long, long, long, long, long, "Last?", "Yes.")],
    { historyTokens: 416, loadTokenizer: loader.load },
  );
  assert.equal(outcomes[0].kind, "record");
  const last = requests.find((request) => request.answer === "Yes.")!;
  assert.equal(last.history.length, 4);
  assert.equal(last.droppedTurns, 2);
  assert.equal(loader.loads(), 1);
});

Deno.test("rephraseStream() tells the thought writer the framing, so it can refuse a thought holding it", async () => {
  const framings: unknown[] = [];
  const writeThought: ThoughtWriter = (_request, context) => {
    framings.push(context.framing);
    return Promise.resolve({ ok: true, thought: "Ok." });
  };
  const pipeline = rephraseStream({ framing: FRAMING, writeThought });
  const input = JSON.stringify(chat("Hi?", "Hello.")) + "\n";
  ReadableStream.from([new TextEncoder().encode(input)]).pipeTo(pipeline.writable);
  assert.equal((await Array.fromAsync(pipeline.readable))[0].kind, "record");
  assert.deepEqual(framings, [FRAMING]);
});

Deno.test("rephraseStream() does not load the tokenizer for histories that fit", async () => {
  const loader = countingLoader();
  const records = [
    chat("Capital of France?", "Paris."),
    chat("Hi — who are you?", "An assistant.", "What’s 2+2?", "4.", "And 3+3?", "6."),
    chat("x".repeat(2000), "y".repeat(900), "Shorter?", "Yes."),
  ];
  const { outcomes, requests } = await rephrase(records, { loadTokenizer: loader.load });
  assert.deepEqual(outcomes.map((outcome) => outcome.kind), ["record", "record", "record"]);
  assert.equal(requests.at(-1)!.history.length, 2);
  assert.equal(loader.loads(), 0);
});

Deno.test("rephraseStream() rejects a record too deep to write back and goes on", async () => {
  // Valid JSON that JSON.parse reads but JSON.stringify cannot write back: it used to end the run.
  const depth = 200_000;
  const deep = `{"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}],` +
    `"deep":${"[".repeat(depth)}${"]".repeat(depth)}}`;
  const { outcomes, requests } = await rephrase([deep, chat("Hi?", "Hello.")]);
  assert.equal(outcomes.length, 2);
  const [rejected, written] = outcomes;
  assert.equal(rejected.kind, "reject");
  assert.equal(rejected.line, 1);
  assert.match(rejected.kind === "reject" ? rejected.reason : "", /^nested too deeply: \S/);
  assert.equal(written.kind, "record");
  assert.equal(written.line, 2);
  assert.deepEqual(requests.map((request) => request.answer), ["Hello."]);
});

Deno.test("rephraseStream() keeps answers that already have a thought and asks for the others", async () => {
  const done = `${FRAMING.preface}\nSay hi back.\n${FRAMING.suffix}\nHello.`;
  const kept: number[] = [];
  const partly = chat("Hi?", done, "And 2+2?", "4.");
  const fully = chat("Hi?", done);
  const { outcomes, requests } = await rephrase([partly, fully], {
    onKeptThought: (line) => kept.push(line),
  });
  assert.deepEqual(requests.map((request) => request.answer), ["4."]);
  assert.deepEqual(kept, [1, 2]);
  assert.deepEqual(outcomes.map((outcome) => outcome.kind), ["record", "record"]);
  const [first, second] = outcomes.map((outcome) =>
    outcome.kind === "record" ? JSON.parse(outcome.json) : null
  );
  assert.equal(first.conversations[1].value, done);
  assert.equal(first.conversations[3].value, `${FRAMING.preface}\nOk.\n${FRAMING.suffix}\n4.`);
  assert.deepEqual(second, fully);
});

Deno.test("rephraseStream() keeps answers that already reason in their own way", async () => {
  const r1 = chat("2+2?", "<think>\n2 and 2 make 4.\n</think>\n\n4");
  const crlf = chat("Hi?", `${FRAMING.preface}\r\nSay hi.\r\n${FRAMING.suffix}\r\nHello.`);
  const separate = JSON.stringify({
    messages: [
      { role: "user", content: "3+3?" },
      { role: "assistant", content: "6", reasoning_content: "3 and 3 make 6." },
      { role: "user", content: "4+4?" },
      { role: "assistant", content: "8" },
    ],
  });
  const kept: number[] = [];
  const { outcomes, requests } = await rephrase([r1, crlf, separate], {
    onKeptThought: (line) => kept.push(line),
  });
  assert.deepEqual(requests.map((request) => request.answer), ["8"]);
  assert.deepEqual(kept, [1, 2, 3]);
  assert.deepEqual(outcomes.map((outcome) => outcome.kind), ["record", "record", "record"]);
  const written = outcomes.map((outcome) =>
    outcome.kind === "record" ? JSON.parse(outcome.json) : null
  );
  assert.deepEqual(written[0], r1);
  assert.deepEqual(written[1], crlf);
  assert.equal(written[2].messages[1].content, "6");
});

/**
 * Runs bytes through the pipeline in 64 KiB chunks, as a file is read; the writer thinks "Ok." a
 * timer tick later, as a real endpoint answers later, so the reader falls behind the input.
 */
function rephraseBytes(bytes: Uint8Array, format: "jsonl" | "auto" = "jsonl"): Promise<Outcome[]> {
  const writeThought: ThoughtWriter = () =>
    new Promise((resolve) => setTimeout(() => resolve({ ok: true, thought: "Ok." }), 0));
  const pipeline = rephraseStream({ framing: FRAMING, writeThought, format });
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += 65536) chunks.push(bytes.subarray(at, at + 65536));
  ReadableStream.from(chunks).pipeTo(pipeline.writable);
  return Array.fromAsync(pipeline.readable);
}

/** `count` OpenAI records, one a line, as the tester's files hold them. */
function chatLines(count: number): string {
  let text = "";
  for (let i = 0; i < count; i++) {
    text += JSON.stringify({
      messages: [{ role: "user", content: "hi" }, { role: "assistant", content: `h${i}` }],
    }) + "\n";
  }
  return text;
}

/** What the outcomes come to: lines written, and every reject by line and reason. */
function tally(outcomes: Outcome[]): { written: number; rejects: [number, string][] } {
  const rejects = outcomes.flatMap((outcome) =>
    outcome.kind === "reject" ? [[outcome.line, outcome.reason] as [number, string]] : []
  );
  return { written: outcomes.length - rejects.length, rejects };
}

Deno.test("rephraseStream() writes every record of gzip data followed by junk, and rejects the junk once", async () => {
  for (const count of [3, 3000]) {
    const gzip = gzipSync(chatLines(count));
    const input = new Uint8Array([...gzip, ...new TextEncoder().encode("garbage after")]);
    assert.deepEqual(tally(await rephraseBytes(input)), {
      written: count,
      rejects: [[
        count + 1,
        `the gzip data ends after ${gzip.length} bytes; the 13 bytes after it are not gzip data ` +
        "and were not read",
      ]],
    });
  }
});

Deno.test("rephraseStream() writes every record of the whole gzip members before a cut one", async () => {
  const first = gzipSync(chatLines(3000));
  const input = new Uint8Array([...first, ...gzipSync(chatLines(3000)).subarray(0, 20)]);
  assert.deepEqual(tally(await rephraseBytes(input)), {
    written: 3000,
    rejects: [[
      3001,
      `the gzip data breaks off after ${input.length} bytes (unexpected end of file in member ` +
      "2): nothing after it could be read",
    ]],
  });
});

Deno.test("rephraseStream() rejects a record gzip data cut in two once, with the break", async () => {
  const text = chatLines(3000);
  const gzip = gzipSync(text);
  const cut = gzip.subarray(0, gzip.length >> 1);
  const decodable = gunzipSync(cut, { finishFlush: constants.Z_SYNC_FLUSH }).toString();
  const whole = decodable.split("\n").length - 1;
  assert.ok(!decodable.endsWith("\n"), "the cut falls inside a record");
  const outcomes = await rephraseBytes(cut);
  assert.deepEqual(tally(outcomes), {
    written: whole,
    rejects: [[
      whole + 1,
      `the gzip data breaks off after ${cut.length} bytes (unexpected end of file): nothing ` +
      "after it could be read",
    ]],
  });
  const last = outcomes.at(-1)!;
  assert.equal(
    last.kind === "reject" && last.raw,
    decodable.slice(decodable.lastIndexOf("\n") + 1),
  );
});

Deno.test("rephraseStream() writes every element of a JSON array around a broken one", async () => {
  // The tester's file: 200 records as json.dump(indent=2) writes them, element 5 broken.
  const records = Array.from({ length: 200 }, (_, i) => ({
    messages: [{ role: "user", content: `q${i}` }, { role: "assistant", content: `A${i}` }],
  }));
  const text = JSON.stringify(records, null, 2);
  const lines = text.split("\n");
  const start = lines.indexOf('        "content": "A5"') - 8; // element 5's "{" line, from 0
  const unterminated = text.replace('"A5"', '"A5');
  const unclosed = lines.with(start + 11, "  ,").join("\n"); // its "  }," loses the "}"
  for (
    const [broken, reason] of [
      [
        unterminated,
        `element breaks off at line ${start + 9}: a string runs past the end of its line; lines ` +
        `${start + 1} to ${start + 12} could not be read`,
      ],
      [
        unclosed,
        `element is still open where line ${
          start + 13
        } starts another at its indentation (a } or ] ` +
        `is missing): lines ${start + 1} to ${start + 12} could not be read`,
      ],
    ]
  ) {
    const outcomes = await rephraseBytes(new TextEncoder().encode(broken), "auto");
    assert.deepEqual(tally(outcomes), { written: 199, rejects: [[start + 1, reason]] });
  }
});

Deno.test("rephraseStream() cuts a long rejected line's raw text on a whole character", async () => {
  // The record has no answer, so it is rejected; its emoji straddles the cut at 10,000.
  const head = '{"conversations":[{"from":"human","value":"';
  const line = `${head}${"a".repeat(MAX_REJECT_RAW_CHARS - 1 - head.length)}😀 and more"}]}`;
  assert.equal(line.charCodeAt(MAX_REJECT_RAW_CHARS - 1), 0xd83d);
  const { outcomes } = await rephrase([line]);
  const reject = outcomes[0];
  assert.equal(reject.kind, "reject");
  if (reject.kind !== "reject") return;
  assert.equal(reject.raw, line.slice(0, MAX_REJECT_RAW_CHARS - 1) + "…");
  assert.equal(reject.raw.isWellFormed(), true);
});
