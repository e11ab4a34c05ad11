/**
 * Scenario: a corpus of bad and odd inputs, each with the outcome the README documents ("Bad
 * input" and "Policy for odd conversations"), and the exit code that goes with it: 0 when all
 * was written, 1 when something was rejected. Every line in is written, rejected with its line
 * number and reason, or skipped as blank; nothing else.
 *
 * Three runs: a folder of bad JSONL and a JSON array file (exit 1), a clean file with a
 * 200-turn conversation (exit 0), and 100,000 tiny records (exit 1).
 *
 * @module
 */

import { join } from "node:path";
import { startFakeOpenAI } from "../fake_openai.ts";
import { type GeneratedRecord, recordMismatch } from "./corpus.ts";
import {
  BrokenLine,
  isRecord,
  parseJsonl,
  preview,
  readIfExists,
  readRejects,
  runCli,
  type ScenarioReport,
  summaryCounts,
  tail,
} from "./harness.ts";
import type { SuiteContext } from "./suite.ts";

/** What must become of one input line. */
type Expect =
  | { written: readonly number[] }
  | { rejected: RegExp }
  | { blank: true }
  /** Not documented: written untouched or rejected with a reason are both acceptable. */
  | { writtenOrRejected: readonly number[] };

interface Case {
  name: string;
  /** The line without its line break. */
  line: string | Uint8Array;
  expect: Expect;
  /** Line break after it. @default {"\n"} */
  end?: string;
}

const encoder = new TextEncoder();
const MAX_LINE_BYTES = 4096;

/** A ShareGPT record line from `[from, value]` pairs. */
function sharegpt(id: string, ...turns: [string, string][]): string {
  return JSON.stringify({ id, conversations: turns.map(([from, value]) => ({ from, value })) });
}

/** The bad-and-odd JSONL corpus, in file order. */
function jsonlCases(): Case[] {
  const ok = (id: string) =>
    sharegpt(id, ["human", `Question of ${id}?`], ["gpt", `Answer of ${id}.`]);
  const bytes = (before: string, raw: number[], after: string) =>
    new Uint8Array([...encoder.encode(before), ...raw, ...encoder.encode(after)]);
  return [
    { name: "BOM before the first record", line: "\uFEFF" + ok("bom"), expect: { written: [1] } },
    { name: "not JSON", line: "{not json", expect: { rejected: /^not valid JSON/ } },
    { name: "a JSON array line", line: "[1, 2]", expect: { rejected: /^not a JSON object/ } },
    { name: "a JSON string line", line: '"hello"', expect: { rejected: /^not a JSON object/ } },
    { name: "JSON null", line: "null", expect: { rejected: /^not a JSON object/ } },
    { name: "no conversation", line: '{"id": "x"}', expect: { rejected: /^no conversation/ } },
    {
      name: "conversations not an array",
      line: '{"conversations": "hi"}',
      expect: { rejected: /"conversations" must be an array/ },
    },
    { name: "no turns", line: '{"conversations": []}', expect: { rejected: /no turns/ } },
    {
      name: "turn not an object",
      line: '{"conversations": [1]}',
      expect: { rejected: /^turn 1 is not an object/ },
    },
    {
      name: "turn value not a string",
      line: '{"conversations": [{"from": "human", "value": 5}]}',
      expect: { rejected: /^turn 1: "value" must be a string/ },
    },
    {
      name: "unknown role",
      line: '{"conversations": [{"from": "narrator", "value": "x"}]}',
      expect: { rejected: /^turn 1: unknown role "narrator"/ },
    },
    {
      name: "turn with neither shape",
      line: '{"conversations": [{"speaker": "human", "text": "x"}]}',
      expect: { rejected: /^turn 1 has neither/ },
    },
    {
      name: "turn shapes mixed",
      line:
        '{"conversations": [{"from": "human", "value": "q"}, {"role": "assistant", "content": "a"}]}',
      expect: { rejected: /^turn 2 mixes/ },
    },
    {
      name: "no assistant turn",
      line: sharegpt("no-assistant", ["human", "Anyone there?"]),
      expect: { rejected: /^no assistant turn answers a user turn$/ },
    },
    {
      name: "only an empty answer",
      line: sharegpt("empty-only", ["human", "Say nothing?"], ["gpt", "  \n"]),
      expect: { rejected: /^no assistant turn answers a user turn$/ },
    },
    {
      name: "only a greeting",
      line: sharegpt("greeting-only", ["gpt", "Hi, I am a bot."]),
      expect: { rejected: /^no assistant turn answers a user turn$/ },
    },
    { name: "blank line", line: "", expect: { blank: true } },
    { name: "whitespace-only line", line: " \t ", expect: { blank: true } },
    { name: "CRLF line end", line: ok("crlf"), expect: { written: [1] }, end: "\r\n" },
    { name: "blank CRLF line", line: "", expect: { blank: true }, end: "\r\n" },
    {
      name: "over-long line",
      line: sharegpt("long", ["human", "Long?"], ["gpt", "x".repeat(MAX_LINE_BYTES)]),
      expect: { rejected: new RegExp(`^line is \\d+ bytes, over the limit of ${MAX_LINE_BYTES}$`) },
    },
    {
      name: "invalid UTF-8 (0xFF)",
      line: bytes(
        `{"id":"utf8-ff","conversations":[{"from":"human","value":"bad `,
        [0xff],
        `?"},{"from":"gpt","value":"a"}]}`,
      ),
      expect: { rejected: /^invalid UTF-8$/ },
    },
    {
      name: "invalid UTF-8 (overlong /)",
      line: bytes(
        `{"id":"utf8-overlong","conversations":[{"from":"human","value":"`,
        [0xc0, 0xaf],
        `"},{"from":"gpt","value":"a"}]}`,
      ),
      expect: { rejected: /^invalid UTF-8$/ },
    },
    {
      name: "invalid UTF-8 (cut 3-byte char)",
      line: bytes(
        `{"id":"utf8-cut","conversations":[{"from":"human","value":"euro `,
        [0xe2, 0x82],
        `"},{"from":"gpt","value":"a"}]}`,
      ),
      expect: { rejected: /^invalid UTF-8$/ },
    },
    {
      name: "lone surrogate escapes",
      line: '{"id":"surrogate","conversations":[{"from":"human","value":"half \\ud800 pair?"},' +
        '{"from":"gpt","value":"Lone \\udc00 low half."}]}',
      expect: { writtenOrRejected: [1] },
    },
    {
      name: "valid multi-byte UTF-8",
      line: sharegpt("utf8-ok", ["human", "Ça va? 日本語 🇵🇹"], ["gpt", "Très bien, 한국어 too 👍"]),
      expect: { written: [1] },
    },
    // Policy for odd conversations.
    {
      name: "greeting before the first question",
      line: sharegpt("greeting", ["gpt", "Hello!"], ["human", "Greeting case?"], ["gpt", "Yes."]),
      expect: { written: [2] },
    },
    {
      name: "two assistant turns in a row",
      line: sharegpt("two-gpt", ["human", "Two answers?"], ["gpt", "First."], ["gpt", "Second."]),
      expect: { written: [1, 2] },
    },
    {
      name: "two user turns in a row",
      line: sharegpt("two-human", ["human", "Part one."], ["human", "Part two?"], ["gpt", "Both."]),
      expect: { written: [2] },
    },
    {
      name: "trailing user turn",
      line: sharegpt("trailing", ["human", "Trailing q?"], ["gpt", "A."], ["human", "And then?"]),
      expect: { written: [1] },
    },
    {
      name: "empty answer in the middle",
      line: sharegpt("empty-mid", ["human", "Q1?"], ["gpt", ""], ["human", "Q2 empty-mid?"], [
        "gpt",
        "A2.",
      ]),
      expect: { written: [3] },
    },
    {
      name: "system turn in the middle",
      line: sharegpt(
        "system-mid",
        ["human", "Q sys-mid?"],
        ["gpt", "A1."],
        ["system", "Be brief."],
        [
          "human",
          "Q2 sys-mid?",
        ],
        ["gpt", "A2."],
      ),
      expect: { written: [1, 4] },
    },
    {
      name: "tool-call-only assistant turn",
      line: JSON.stringify({
        id: "tool-call",
        messages: [
          { role: "user", content: "Weather tool-call?" },
          {
            role: "assistant",
            content: null,
            tool_calls: [{ id: "c1", type: "function", function: { name: "w", arguments: "{}" } }],
          },
          { role: "tool", tool_call_id: "c1", content: "sunny" },
          { role: "assistant", content: "Sunny." },
        ],
      }),
      expect: { written: [3] },
    },
    {
      name: "function_call and observation turns",
      line: sharegpt("observation", ["human", "Obs case?"], ["function_call", '{"name":"f"}'], [
        "observation",
        "42",
      ], ["gpt", "It is 42."]),
      expect: { written: [3] },
    },
    {
      name: "top-level system field",
      line: JSON.stringify({
        id: "top-system",
        system: "You are terse.",
        conversations: [{ from: "human", value: "Top system?" }, { from: "gpt", value: "Yes." }],
      }),
      expect: { written: [1] },
    },
    {
      name: "last record, no final newline",
      line: ok("no-final-newline"),
      expect: { written: [1] },
      end: "",
    },
  ];
}

/** A pretty-printed JSON array file with one bad element; line numbers are element starts. */
const ARRAY_FILE = `[
  {"id": "arr-1", "conversations": [{"from": "human", "value": "Array one?"}, {"from": "gpt", "value": "One."}]},
  {
    "id": "arr-2",
    "messages": [
      {"role": "user", "content": "Array two?"},
      {"role": "assistant", "content": "Two."}
    ]
  },
  42,
  {"id": "arr-4", "conversations": [{"from": "human", "value": "Array four?"}, {"from": "gpt", "value": "Four."}]}
]
`;

/** Runs the scenario into `report`. */
export async function badInput(report: ScenarioReport, context: SuiteContext): Promise<void> {
  await using fake = await startFakeOpenAI();
  await badFolder(report, context, fake.url);
  await cleanLongConversation(report, context, fake.url);
  await tinyRecords(report, context);
}

async function badFolder(report: ScenarioReport, context: SuiteContext, url: string) {
  const cases = jsonlCases();
  const folder = join(context.dir, "bad");
  const out = join(context.dir, "bad-out");
  await Deno.mkdir(folder, { recursive: true });
  const parts: Uint8Array[] = [];
  for (const item of cases) {
    parts.push(typeof item.line === "string" ? encoder.encode(item.line) : item.line);
    parts.push(encoder.encode(item.end ?? "\n"));
  }
  await Deno.writeFile(join(folder, "mixed.jsonl"), concat(parts));
  await Deno.writeTextFile(join(folder, "array.json"), ARRAY_FILE);

  const result = await runCli(
    [
      folder,
      "-o",
      out,
      "--base-url",
      url,
      "--model",
      "chaos",
      "--max-line-bytes",
      String(MAX_LINE_BYTES),
    ],
    { timeoutMs: 60_000 },
  );
  report.figure("bad folder: cases / exit code", `${cases.length + 4} / ${result.code}`);
  if (!report.check(!result.timedOut, `cotfit hung on the bad folder\n${tail(result.stderr)}`)) {
    return;
  }
  report.check(
    result.code === 1,
    `bad folder exited ${result.code}, expected 1\n${tail(result.stderr)}`,
  );

  // mixed.jsonl, line by line.
  const output = parseJsonl(await readIfExists(join(out, "mixed.jsonl")) ?? "");
  const rejects = await readRejects(join(out, "mixed.rejects.jsonl"), report);
  const rejectByLine = new Map(rejects.map((reject) => [reject.line, reject]));
  let written = 0;
  let rejected = 0;
  let blank = 0;
  let lineNumber = 1;
  const undocumented: string[] = [];
  for (const item of cases) {
    const line = lineNumber;
    lineNumber += (item.end ?? "\n") === "" ? 0 : 1;
    const reject = rejectByLine.get(line);
    rejectByLine.delete(line);
    const expect = item.expect;
    if ("blank" in expect) {
      blank++;
      report.check(
        reject === undefined,
        `${item.name} (line ${line}) was rejected: ${reject?.reason}`,
      );
      continue;
    }
    if ("rejected" in expect) {
      rejected++;
      report.check(
        reject !== undefined && expect.rejected.test(reject.reason),
        `${item.name} (line ${line}): expected a reject matching ${expect.rejected}, ` +
          `got ${reject ? JSON.stringify(reject.reason) : "none"}`,
      );
      continue;
    }
    const turns = "written" in expect ? expect.written : expect.writtenOrRejected;
    if ("writtenOrRejected" in expect && reject !== undefined) {
      rejected++;
      undocumented.push(`${item.name}: rejected (${reject.reason})`);
      continue;
    }
    report.check(reject === undefined, `${item.name} (line ${line}) rejected: ${reject?.reason}`);
    const record: unknown = output[written++];
    const expected = caseRecord(item, turns);
    const mismatch = record === undefined
      ? "missing from the output"
      : recordMismatch(expected, record);
    report.check(
      mismatch === null,
      `${item.name} (line ${line}): ${mismatch}; got ${preview(record)}`,
    );
    if ("writtenOrRejected" in expect) {
      undocumented.push(`${item.name}: written, text kept as is`);
    }
  }
  report.check(
    output.length === written,
    `mixed.jsonl has ${output.length} records, expected ${written}`,
  );
  for (const [line, reject] of rejectByLine) {
    report.check(false, `unexpected reject at line ${line}: ${reject.reason}`);
  }
  report.figure("mixed.jsonl: written / rejected / blank", `${written} / ${rejected} / ${blank}`);
  for (const text of undocumented) report.figure("undocumented case", text);

  // array.json: a JSON array out, the bad element rejected at its starting line.
  const arrayText = await readIfExists(join(out, "array.json"));
  let array: unknown = null;
  try {
    array = JSON.parse(arrayText ?? "");
  } catch {
    report.check(false, `array.json output is not JSON: ${preview(arrayText)}`);
  }
  const ids = Array.isArray(array) ? array.map((item) => isRecord(item) ? item.id : item) : [];
  report.check(
    JSON.stringify(ids) === JSON.stringify(["arr-1", "arr-2", "arr-4"]),
    `array.json output holds ${JSON.stringify(ids)}`,
  );
  const arrayRejects = await readRejects(join(out, "array.rejects.jsonl"), report);
  report.check(
    arrayRejects.length === 1 && arrayRejects[0].line === 10 &&
      /^not a JSON object/.test(arrayRejects[0].reason),
    `array.json rejects: ${JSON.stringify(arrayRejects.map((r) => [r.line, r.reason]))}`,
  );
  report.figure("array.json: written / rejected", `${ids.length} / ${arrayRejects.length}`);

  const summary = summaryCounts(result.stderr);
  report.check(
    summary !== null &&
      (summary.written === written + 3 && summary.rejected === rejected + 1 &&
        summary.skipped === blank),
    `summary ${JSON.stringify(summary)} disagrees with the files`,
  );
}

/** The expected record of a written case. */
function caseRecord(item: Case, thoughtTurns: readonly number[]): GeneratedRecord {
  const text = typeof item.line === "string" ? item.line.replace(/^\uFEFF/, "") : "";
  const record = JSON.parse(text) as Record<string, unknown>;
  return { id: String(record.id), record, thoughtTurns };
}

async function cleanLongConversation(report: ScenarioReport, context: SuiteContext, url: string) {
  const turns: [string, string][] = [["system", "You answer questions about numbers."]];
  for (let n = 1; n <= 100; n++) {
    turns.push(["human", `What is ${n} squared? (long conversation)`], ["gpt", `${n * n}.`]);
  }
  const long = sharegpt("two-hundred-turns", ...turns);
  const lines = [
    sharegpt("before", ["human", "Before the long one?"], ["gpt", "Yes."]),
    "",
    long,
    "   ",
    sharegpt("after", ["human", "After the long one?"], ["gpt", "Yes."]),
  ];
  const input = join(context.dir, "long.jsonl");
  const out = join(context.dir, "long-out");
  await Deno.writeTextFile(input, lines.join("\n"));
  const result = await runCli([input, "-o", out, "--base-url", url, "--model", "chaos"], {
    timeoutMs: 60_000,
  });
  report.figure("200-turn file: exit code", result.code);
  report.check(
    result.code === 0,
    `clean file exited ${result.code}, expected 0\n${tail(result.stderr)}`,
  );
  const output = parseJsonl(await readIfExists(join(out, "long.jsonl")) ?? "");
  const expected: GeneratedRecord[] = [
    { id: "before", record: JSON.parse(lines[0]), thoughtTurns: [1] },
    {
      id: "two-hundred-turns",
      record: JSON.parse(long),
      thoughtTurns: Array.from({ length: 100 }, (_, i) => 2 + 2 * i),
    },
    { id: "after", record: JSON.parse(lines[4]), thoughtTurns: [1] },
  ];
  report.check(output.length === 3, `clean file wrote ${output.length} records, expected 3`);
  expected.forEach((record, i) => {
    const mismatch = output[i] === undefined ? "missing" : recordMismatch(record, output[i]);
    report.check(mismatch === null, `${record.id}: ${mismatch}`);
  });
  report.check(
    await readIfExists(join(out, "long.rejects.jsonl")) === null,
    "a clean file left a rejects file",
  );
}

async function tinyRecords(report: ScenarioReport, context: SuiteContext) {
  const count = 100_000;
  const distinct = 500;
  const lines: string[] = [];
  const expected = { written: 0, rejected: 0, blank: 0 };
  for (let i = 0; i < count; i++) {
    if (i % 10 === 3) {
      lines.push(`not json ${i}`);
      expected.rejected++;
    } else if (i % 50 === 7) {
      lines.push("");
      expected.blank++;
    } else {
      const k = i % distinct;
      lines.push(
        `{"i":${i},"conversations":[{"from":"human","value":"q${k}"},{"from":"gpt","value":"a${k}"}]}`,
      );
      expected.written++;
    }
  }
  const input = join(context.dir, "tiny.jsonl");
  const out = join(context.dir, "tiny-out");
  await Deno.writeTextFile(input, lines.join("\n") + "\n");
  await using fake = await startFakeOpenAI();
  const result = await runCli([input, "-o", out, "--base-url", fake.url, "--model", "chaos"], {
    timeoutMs: 120_000,
  });
  report.figure(
    "100k tiny records: exit / time",
    `${result.code} / ${(result.ms / 1000).toFixed(1)} s (${
      Math.round(count / (result.ms / 1000))
    } lines/s)`,
  );
  if (!report.check(!result.timedOut, `cotfit hung on 100k tiny records\n${tail(result.stderr)}`)) {
    return;
  }
  report.check(result.code === 1, `100k tiny records exited ${result.code}, expected 1`);

  const outputText = await readIfExists(join(out, "tiny.jsonl")) ?? "";
  let written = 0;
  let previous = -1;
  let outOfOrder = 0;
  for (const value of parseJsonl(outputText)) {
    const i = !(value instanceof BrokenLine) && isRecord(value) ? value.i : undefined;
    if (typeof i !== "number" || i <= previous || i % 10 === 3 || i % 50 === 7) outOfOrder++;
    else written++;
    if (typeof i === "number") previous = i;
  }
  const rejects = await readRejects(join(out, "tiny.rejects.jsonl"), report);
  const rejectedLines = new Set(rejects.map((reject) => reject.line));
  const badRejects = rejects.filter((reject) => (reject.line - 1) % 10 !== 3).length;
  report.figure(
    "100k tiny: written / rejected / blank",
    `${written} / ${rejectedLines.size} / ${expected.blank} (calls ${fake.stats.requests})`,
  );
  report.check(
    outOfOrder === 0,
    `${outOfOrder} output records duplicated, unexpected or out of order`,
  );
  report.check(written === expected.written, `${written} written, expected ${expected.written}`);
  report.check(
    rejectedLines.size === expected.rejected && rejects.length === expected.rejected &&
      badRejects === 0,
    `${rejects.length} rejects (${rejectedLines.size} lines, ${badRejects} wrong), expected ${expected.rejected}`,
  );
  const summary = summaryCounts(result.stderr);
  report.check(
    summary !== null && summary.skipped === expected.blank,
    `summary counts ${summary?.skipped} blank lines, expected ${expected.blank}`,
  );
  report.check(
    written + rejectedLines.size + expected.blank === count,
    `${count} lines in != ${written} written + ${rejectedLines.size} rejected + ${expected.blank} blank`,
  );
  report.check(
    fake.stats.requests <= distinct,
    `${fake.stats.requests} calls for ${distinct} distinct prompts`,
  );
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}
