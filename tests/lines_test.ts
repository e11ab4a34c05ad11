import assert from "node:assert/strict";
import {
  jsonArrayStream,
  type LineOptions,
  lineStream,
  type RecordTextOptions,
  recordTextStream,
  sniffLayout,
} from "../src/lines.ts";
import type { Line } from "../src/types.ts";

const encoder = new TextEncoder();

function bytesOf(...parts: (string | number[])[]): Uint8Array {
  const arrays = parts.map((part) => typeof part === "string" ? encoder.encode(part) : part);
  const result = new Uint8Array(arrays.reduce((sum, array) => sum + array.length, 0));
  let offset = 0;
  for (const array of arrays) {
    result.set(array, offset);
    offset += array.length;
  }
  return result;
}

function read(
  chunks: Iterable<Uint8Array>,
  stream: TransformStream<Uint8Array, Line>,
): Promise<Line[]> {
  return Array.fromAsync(ReadableStream.from(chunks).pipeThrough(stream));
}

/** The input cut in two at every position, and cut into single bytes. */
function* splits(bytes: Uint8Array): Generator<{ label: string; chunks: Uint8Array[] }> {
  for (let at = 0; at <= bytes.length; at++) {
    yield { label: `split at ${at}`, chunks: [bytes.subarray(0, at), bytes.subarray(at)] };
  }
  yield {
    label: "one byte per chunk",
    chunks: Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)),
  };
}

async function assertEverySplit(
  bytes: Uint8Array,
  makeStream: () => TransformStream<Uint8Array, Line>,
  expected: Line[],
): Promise<void> {
  for (const { label, chunks } of splits(bytes)) {
    assert.deepEqual(await read(chunks, makeStream()), expected, label);
  }
}

Deno.test("lineStream() keeps text and numbers across every chunk split", async () => {
  const bytes = bytesOf('\uFEFF{"a":"é"}\r\n\n  \n{"b":"😀 中文"}\n{"c":1}');
  await assertEverySplit(bytes, () => lineStream(), [
    { line: 1, text: '{"a":"é"}' },
    { line: 2, text: "" },
    { line: 3, text: "  " },
    { line: 4, text: '{"b":"😀 中文"}' },
    { line: 5, text: '{"c":1}' },
  ]);
});

Deno.test("lineStream() strips one \\r per line and only a BOM at the start", async () => {
  const bytes = bytesOf("a\r\r\nb\r\n\uFEFFc\r");
  assert.deepEqual(await read([bytes], lineStream()), [
    { line: 1, text: "a\r" },
    { line: 2, text: "b" },
    { line: 3, text: "\uFEFFc" },
  ]);
});

Deno.test("lineStream() makes no extra line for a trailing newline", async () => {
  assert.deepEqual(await read([bytesOf("x\n")], lineStream()), [{ line: 1, text: "x" }]);
  assert.deepEqual(await read([bytesOf("x\n\n")], lineStream()), [
    { line: 1, text: "x" },
    { line: 2, text: "" },
  ]);
  assert.deepEqual(await read([bytesOf("\n")], lineStream()), [{ line: 1, text: "" }]);
  assert.deepEqual(await read([], lineStream()), []);
  assert.deepEqual(await read([bytesOf("\uFEFF")], lineStream()), []);
});

Deno.test("lineStream() emits a last line without a newline", async () => {
  assert.deepEqual(await read([bytesOf("x\ny")], lineStream()), [
    { line: 1, text: "x" },
    { line: 2, text: "y" },
  ]);
});

Deno.test("lineStream() keeps a lone start of a BOM as data", async () => {
  assert.deepEqual(await read([new Uint8Array([0xef, 0xbb])], lineStream()), [
    { line: 1, error: "invalid UTF-8", preview: "" },
  ]);
});

Deno.test("lineStream() rejects lines over the limit at the exact boundary", async () => {
  const bytes = bytesOf("12345\n123456\n12345\r\n123456\r\nend");
  const options: LineOptions = { maxLineBytes: 5, previewBytes: 4 };
  const tooLong = { error: "line is 6 bytes, over the limit of 5", preview: "1234" };
  await assertEverySplit(bytes, () => lineStream(options), [
    { line: 1, text: "12345" },
    { line: 2, ...tooLong },
    { line: 3, text: "12345" },
    { line: 4, ...tooLong },
    { line: 5, text: "end" },
  ]);
});

Deno.test("lineStream() rejects an over-long last line without a newline", async () => {
  const lines = await read(
    [bytesOf("ok\n"), bytesOf("abcdefgh"), bytesOf("ijk")],
    lineStream({ maxLineBytes: 4, previewBytes: 2 }),
  );
  assert.deepEqual(lines, [
    { line: 1, text: "ok" },
    { line: 2, error: "line is 11 bytes, over the limit of 4", preview: "ab" },
  ]);
});

Deno.test("lineStream() cuts a preview before a split character, not inside it", async () => {
  const lines = await read([bytesOf("aé€😀b\n")], lineStream({ maxLineBytes: 4, previewBytes: 5 }));
  // a (1) + é (2) + the first 2 of € (3 bytes): the cut € is left out.
  assert.deepEqual(lines, [
    { line: 1, error: "line is 11 bytes, over the limit of 4", preview: "aé" },
  ]);
});

/**
 * `head`, 64 MiB of "x" pulled 64 KiB at a time, then `tail`; `peak()` is how far the heap grew
 * meanwhile, sampled every 4 MiB.
 */
function hugeSource(head: string, tail: string): {
  source: ReadableStream<Uint8Array>;
  peak: () => number;
} {
  const chunk = new Uint8Array(64 * 1024).fill(0x78); // one reused buffer: the source holds nothing
  const chunkCount = 1024;
  const memory = () => Deno.memoryUsage().heapUsed + Deno.memoryUsage().external;
  const before = memory();
  let peak = 0;
  let sent = 0;
  const source = new ReadableStream<Uint8Array>({
    start(controller) {
      if (head !== "") controller.enqueue(bytesOf(head));
    },
    pull(controller) {
      if (sent < chunkCount) {
        controller.enqueue(chunk);
        sent++;
        if (sent % 64 === 0) peak = Math.max(peak, memory() - before);
      } else {
        controller.enqueue(bytesOf(tail));
        controller.close();
      }
    },
  });
  return { source, peak: () => peak };
}

Deno.test("lineStream() counts a 64 MiB line without holding it", async () => {
  const { source, peak } = hugeSource("", '\n{"next":1}\n');
  const lines = await Array.fromAsync(
    source.pipeThrough(lineStream({ maxLineBytes: 1024 * 1024, previewBytes: 10 })),
  );
  assert.deepEqual(lines, [
    { line: 1, error: "line is 67108864 bytes, over the limit of 1048576", preview: "xxxxxxxxxx" },
    { line: 2, text: '{"next":1}' },
  ]);
  assert.ok(peak() < 16 * 1024 * 1024, `memory grew by ${peak()} bytes while reading the line`);
});

Deno.test("lineStream() copies held bytes, so a reused source buffer is safe", async () => {
  const buffer = new Uint8Array(3);
  let pulls = 0;
  const source = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pulls++ === 0) {
        buffer.set(encoder.encode("abc"));
        controller.enqueue(buffer);
        return;
      }
      // Overwrite only once the first chunk has been taken in, as a reusing reader would.
      await new Promise((resolve) => setTimeout(resolve, 0));
      buffer.set(encoder.encode("de\n"));
      controller.enqueue(buffer);
      controller.close();
    },
  }, { highWaterMark: 0 });
  assert.deepEqual(await Array.fromAsync(source.pipeThrough(lineStream())), [
    { line: 1, text: "abcde" },
  ]);
});

Deno.test("lineStream() turns invalid UTF-8 into an error Line and goes on", async () => {
  const bytes = bytesOf("ok\n", '{"a":"', [0xff, 0xfe], '"}\n', [0xc3], "\n", "end");
  await assertEverySplit(bytes, () => lineStream(), [
    { line: 1, text: "ok" },
    { line: 2, error: "invalid UTF-8", preview: '{"a":"\uFFFD\uFFFD"}' },
    { line: 3, error: "invalid UTF-8", preview: "" },
    { line: 4, text: "end" },
  ]);
});

Deno.test("lineStream() rejects bad limits", () => {
  assert.throws(() => lineStream({ maxLineBytes: 0 }), RangeError);
  assert.throws(() => lineStream({ maxLineBytes: 1.5 }), RangeError);
  assert.throws(() => lineStream({ previewBytes: -1 }), RangeError);
});

const prettyArray = [
  "\uFEFF[",
  "  {",
  '    "id": "a]",',
  '    "q": "say \\"[hi\\", {ok}\\\\",',
  '    "nested": [[1, 2], {"x": [3]}],',
  '    "end": "back\\\\"',
  "  },",
  '  {"id": "é😀", "list": []}',
  "  ,",
  "  [1, 2],",
  "  3",
  "]",
  "",
].join("\r\n");

Deno.test("jsonArrayStream() yields each element's exact text at its start line", async () => {
  const elementA = [
    "{",
    '    "id": "a]",',
    '    "q": "say \\"[hi\\", {ok}\\\\",',
    '    "nested": [[1, 2], {"x": [3]}],',
    '    "end": "back\\\\"',
    "  }",
  ].join("\r\n");
  const expected = [
    { line: 2, text: elementA },
    { line: 8, text: '{"id": "é😀", "list": []}' },
    { line: 10, text: "[1, 2]" },
    { line: 11, text: "3" },
  ];
  await assertEverySplit(bytesOf(prettyArray), () => jsonArrayStream(), expected);
  const parsed = (await read([bytesOf(prettyArray)], jsonArrayStream()))
    .map((line) => "text" in line ? JSON.parse(line.text) : line);
  assert.deepEqual(parsed[0], {
    id: "a]",
    q: 'say "[hi", {ok}\\',
    nested: [[1, 2], { x: [3] }],
    end: "back\\",
  });
});

Deno.test("jsonArrayStream() counts newlines inside elements for the next start line", async () => {
  const text = '[{"a":\n1,\n"b":\n2},{"c":3},\n\n{"d":"x"}]';
  assert.deepEqual(await read([bytesOf(text)], jsonArrayStream()), [
    { line: 1, text: '{"a":\n1,\n"b":\n2}' },
    { line: 4, text: '{"c":3}' },
    { line: 6, text: '{"d":"x"}' },
  ]);
});

Deno.test("jsonArrayStream() breaks an element at a raw newline in a string, escaped or not", async () => {
  // Never valid JSON: the element breaks there, and the next line starting with its first byte
  // starts the next one (an element that did not start its own line has no indentation to go by).
  const text = '["a\nb", "c",\n"d\\\nx",\n"e"]';
  await assertEverySplit(bytesOf(text), () => jsonArrayStream(), [
    {
      line: 1,
      error: "element breaks off at line 1: a string runs past the end of its line; lines 1 to 2 " +
        "could not be read",
      preview: '"a',
    },
    {
      line: 3,
      error: "element breaks off at line 3: a string runs past the end of its line; lines 3 to 4 " +
        "could not be read",
      preview: '"d\\',
    },
    { line: 5, text: '"e"' },
  ]);
});

Deno.test("jsonArrayStream() matches JSON.parse on random arrays cut at random", async () => {
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const pieces = ["a", " ", '"', "\\", "\\\\", "[", "]", "{", "}", ",", "\n", "é", "😀", '\\"]'];
  const randomString = () =>
    Array.from({ length: Math.floor(random() * 8) }, () => pick(pieces)).join("");
  const randomValue = (depth: number): unknown => {
    const kind = depth > 3 ? Math.floor(random() * 3) : Math.floor(random() * 5);
    if (kind === 0) return randomString();
    if (kind === 1) return Math.floor(random() * 1000) - 500;
    if (kind === 2) return pick([null, true, false]);
    if (kind === 3) {
      return Array.from({ length: Math.floor(random() * 4) }, () => randomValue(depth + 1));
    }
    return Object.fromEntries(
      Array.from(
        { length: Math.floor(random() * 4) },
        () => [randomString(), randomValue(depth + 1)],
      ),
    );
  };
  for (let round = 0; round < 50; round++) {
    const values = Array.from({ length: Math.floor(random() * 6) }, () => randomValue(0));
    const text = JSON.stringify(values, null, pick([0, 1, 2, "\t"]));
    const bytes = encoder.encode(text);
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < bytes.length;) {
      const size = 1 + Math.floor(random() * 16);
      chunks.push(bytes.subarray(at, at + size));
      at += size;
    }
    const lines = await read(chunks, jsonArrayStream());
    assert.deepEqual(lines.map((line) => "text" in line ? JSON.parse(line.text) : line), values);
    let position = 1;
    for (const line of lines) {
      assert.ok("text" in line);
      position = text.indexOf(line.text, position);
      assert.equal(line.line, text.slice(0, position).split("\n").length, text);
      position += line.text.length;
    }
  }
});

Deno.test("jsonArrayStream() yields nothing for an empty array or empty input", async () => {
  assert.deepEqual(await read([bytesOf("[]")], jsonArrayStream()), []);
  assert.deepEqual(await read([bytesOf("\n [\n ]\n")], jsonArrayStream()), []);
  assert.deepEqual(await read([], jsonArrayStream()), []);
});

Deno.test("jsonArrayStream() skips stray commas", async () => {
  assert.deepEqual(await read([bytesOf("[,1,,\n2,]")], jsonArrayStream()), [
    { line: 1, text: "1" },
    { line: 2, text: "2" },
  ]);
});

Deno.test("jsonArrayStream() reports an array that is not closed", async () => {
  const cut = '[\n  {"a": 1},\n  {"b": "x]",\n   "c": [';
  await assertEverySplit(bytesOf(cut), () => jsonArrayStream({ previewBytes: 6 }), [
    { line: 2, text: '{"a": 1}' },
    {
      line: 3,
      error: "JSON array is not closed: lines 3 to 4 could not be read",
      preview: '{"b": ',
    },
  ]);
  assert.deepEqual(await read([bytesOf('[{"a": 1},\n')], jsonArrayStream()), [
    { line: 1, text: '{"a": 1}' },
    { line: 1, error: "JSON array is not closed", preview: "" },
  ]);
  assert.deepEqual(await read([bytesOf('\n[{"a": 1}')], jsonArrayStream()), [
    { line: 2, error: "JSON array is not closed: line 2 could not be read", preview: '{"a": 1}' },
  ]);
});

Deno.test("jsonArrayStream() reports content that is not an array", async () => {
  assert.deepEqual(await read([bytesOf('{"a": 1}\n{"b": 2}\n')], jsonArrayStream()), [
    { line: 1, error: "not a JSON array", preview: '{"a": 1}\n{"b": 2}\n' },
  ]);
});

Deno.test("jsonArrayStream() rejects a stray line after the closing bracket and reads on", async () => {
  const text = '[1,\n2]\n\nxyz, "q"\r\n[3,\n4] oops\n{"a": 1}\n{"b": [2]}\n';
  await assertEverySplit(bytesOf(text), () => jsonArrayStream(), [
    { line: 1, text: "1" },
    { line: 2, text: "2" },
    { line: 4, error: "unexpected content after the JSON array", preview: 'xyz, "q"\r' },
    // A second array's elements, then objects one after another, as JSONL lines are.
    { line: 5, text: "3" },
    { line: 6, text: "4" },
    { line: 6, error: "unexpected content after the JSON array", preview: "oops" },
    { line: 7, text: '{"a": 1}' },
    { line: 8, text: '{"b": [2]}' },
  ]);
});

Deno.test("jsonArrayStream() rejects an over-long element and reads the next", async () => {
  const text = '[\n"1234",\n"12345" \n ,\n"123456",\n{"a":\n"b"}\n]';
  const options: LineOptions = { maxLineBytes: 7, previewBytes: 3 };
  await assertEverySplit(bytesOf(text), () => jsonArrayStream(options), [
    { line: 2, text: '"1234"' },
    { line: 3, text: '"12345"' },
    { line: 5, error: "element is 8 bytes, over the limit of 7", preview: '"12' },
    { line: 6, error: "element is 10 bytes, over the limit of 7", preview: '{"a' },
  ]);
});

Deno.test("jsonArrayStream() counts a huge element without holding it", async () => {
  const { source, peak } = hugeSource('[\n"', '",\n{"next":1}]');
  const lines = await Array.fromAsync(
    source.pipeThrough(jsonArrayStream({ maxLineBytes: 1024 * 1024, previewBytes: 3 })),
  );
  assert.deepEqual(lines, [
    { line: 2, error: "element is 67108866 bytes, over the limit of 1048576", preview: '"xx' },
    { line: 3, text: '{"next":1}' },
  ]);
  assert.ok(peak() < 16 * 1024 * 1024, `memory grew by ${peak()} bytes while reading the element`);
});

Deno.test("jsonArrayStream() turns invalid UTF-8 in an element into an error Line", async () => {
  const bytes = bytesOf('[{"a":"', [0xff], '"},\n{"b":1}]');
  await assertEverySplit(bytes, () => jsonArrayStream(), [
    { line: 1, error: "invalid UTF-8", preview: '{"a":"\uFFFD"}' },
    { line: 2, text: '{"b":1}' },
  ]);
});

Deno.test("recordTextStream() reads JSONL by default, even when a line is an array", async () => {
  assert.deepEqual(await read([bytesOf("[1]\n[2]\n")], recordTextStream()), [
    { line: 1, text: "[1]" },
    { line: 2, text: "[2]" },
  ]);
});

Deno.test("recordTextStream() with auto reads a JSON array after a BOM and blank lines", async () => {
  const bytes = bytesOf("\uFEFF \r\n\t\n[\n", '{"a":1},\n', '{"a":2}\n]\n');
  await assertEverySplit(bytes, () => recordTextStream({ format: "auto" }), [
    { line: 4, text: '{"a":1}' },
    { line: 5, text: '{"a":2}' },
  ]);
});

Deno.test("recordTextStream() with auto reads JSONL when the first byte is not [", async () => {
  const bytes = bytesOf("\uFEFF\n", '{"a":1}\n', '{"a":2}\n');
  await assertEverySplit(bytes, () => recordTextStream({ format: "auto" }), [
    { line: 1, text: "" },
    { line: 2, text: '{"a":1}' },
    { line: 3, text: '{"a":2}' },
  ]);
});

Deno.test("recordTextStream() with auto reads pretty-printed objects one after another", async () => {
  // As json.dumps(record, indent=2) per record, or jq, write them: "{" alone on the first line.
  const first = '{\n  "a": "x}\\"",\n  "b": [1, {"c": 2}]\n}';
  const bytes = bytesOf("\uFEFF\n", `${first}\n`, '{ "d": [] }\n\n', '[{"e": 3}]\n');
  await assertEverySplit(bytes, () => recordTextStream({ format: "auto" }), [
    { line: 2, text: first },
    { line: 6, text: '{ "d": [] }' },
    { line: 8, text: '[{"e": 3}]' },
  ]);
  assert.deepEqual(JSON.parse(first), { a: 'x}"', b: [1, { c: 2 }] });
});

Deno.test("recordTextStream() with auto reports pretty-printed objects it cannot split", async () => {
  const auto = () => recordTextStream({ format: "auto", previewBytes: 4 });
  assert.deepEqual(await read([bytesOf('{\n "a": 1\n}\n{\n "b": 2\n')], auto()), [
    { line: 1, text: '{\n "a": 1\n}' },
    {
      line: 4,
      error: "JSON value is not closed: lines 4 to 5 could not be read",
      preview: '{\n "',
    },
  ]);
  assert.deepEqual(await read([bytesOf('{\n "a": 1\n}\n42\n{"b": 2}\n')], auto()), [
    { line: 1, text: '{\n "a": 1\n}' },
    { line: 4, error: "unexpected content between JSON values", preview: "42" },
    { line: 5, text: '{"b": 2}' },
  ]);
  // A first line holding more than "{" is JSONL, whatever follows.
  assert.deepEqual(await read([bytesOf('{ "a": 1,\n"b": 2}\n')], auto()), [
    { line: 1, text: '{ "a": 1,' },
    { line: 2, text: '"b": 2}' },
  ]);
});

Deno.test("recordTextStream() with auto passes limits on and handles blank input", async () => {
  const options: RecordTextOptions = { format: "auto", maxLineBytes: 3, previewBytes: 2 };
  assert.deepEqual(await read([bytesOf("[1234, 5]")], recordTextStream(options)), [
    { line: 1, error: "element is 4 bytes, over the limit of 3", preview: "12" },
    { line: 1, text: "5" },
  ]);
  assert.deepEqual(await read([bytesOf("1234\n5")], recordTextStream(options)), [
    { line: 1, error: "line is 4 bytes, over the limit of 3", preview: "12" },
    { line: 2, text: "5" },
  ]);
  assert.deepEqual(await read([], recordTextStream(options)), []);
  assert.deepEqual(await read([bytesOf(" \n\n")], recordTextStream({ format: "auto" })), [
    { line: 1, text: " " },
    { line: 2, text: "" },
  ]);
});

const SHAREGPT_TURNS = '[{"from":"human","value":"Hi ]\\n"},{"from":"gpt","value":"Hello"}]';
const OPENAI_TURNS = '[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]';

Deno.test("recordTextStream() with auto reads JSONL of bare turn lists line by line", async () => {
  const bytes = bytesOf(
    "\uFEFF\n",
    ` ${SHAREGPT_TURNS}\r\n`,
    `${OPENAI_TURNS}\n\n`,
    '{"from":"human","value":"x"}\n',
    "[1]",
  );
  await assertEverySplit(bytes, () => recordTextStream({ format: "auto" }), [
    { line: 1, text: "" },
    { line: 2, text: ` ${SHAREGPT_TURNS}` },
    { line: 3, text: OPENAI_TURNS },
    { line: 4, text: "" },
    { line: 5, text: '{"from":"human","value":"x"}' },
    { line: 6, text: "[1]" },
  ]);
});

Deno.test("recordTextStream() with auto reads an array of records or of turn lists as an array", async () => {
  const record = `{"id":1,"conversations":${SHAREGPT_TURNS}}`;
  const cases: [string, Line[]][] = [
    // Records on one line, or a turn list beside one.
    [`[${record},{"id":2}]\n`, [{ line: 1, text: record }, { line: 1, text: '{"id":2}' }]],
    [
      `[${OPENAI_TURNS.slice(1, -1)},${record}]`,
      [
        { line: 1, text: '{"role":"user","content":"2+2?"}' },
        { line: 1, text: '{"role":"assistant","content":"4"}' },
        { line: 1, text: record },
      ],
    ],
    // Turn lists, on one line or pretty-printed.
    [
      `[${SHAREGPT_TURNS},${OPENAI_TURNS}]\n`,
      [{ line: 1, text: SHAREGPT_TURNS }, { line: 1, text: OPENAI_TURNS }],
    ],
    [
      `[\n  ${SHAREGPT_TURNS},\n  ${OPENAI_TURNS}\n]\n`,
      [{ line: 2, text: SHAREGPT_TURNS }, { line: 3, text: OPENAI_TURNS }],
    ],
    // Turns, but the array goes on past its first line: each element is a record.
    [
      `[${OPENAI_TURNS.slice(1, -1)},\n{"role":"user","content":"x"}]`,
      [
        { line: 1, text: '{"role":"user","content":"2+2?"}' },
        { line: 1, text: '{"role":"assistant","content":"4"}' },
        { line: 2, text: '{"role":"user","content":"x"}' },
      ],
    ],
  ];
  for (const [text, expected] of cases) {
    await assertEverySplit(bytesOf(text), () => recordTextStream({ format: "auto" }), expected);
  }
});

Deno.test("recordTextStream() with auto takes a [ line as JSONL only within maxLineBytes", async () => {
  const fits = { format: "auto", maxLineBytes: SHAREGPT_TURNS.length } as const;
  // At the limit, CR or not: JSONL.
  await assertEverySplit(
    bytesOf(`${SHAREGPT_TURNS}\r\n${SHAREGPT_TURNS}`),
    () => recordTextStream(fits),
    [{ line: 1, text: SHAREGPT_TURNS }, { line: 2, text: SHAREGPT_TURNS }],
  );
  // One byte over, its leading space included: JSONL would reject it whole, so an array it is.
  await assertEverySplit(bytesOf(` ${SHAREGPT_TURNS}`), () => recordTextStream(fits), [
    { line: 1, text: '{"from":"human","value":"Hi ]\\n"}' },
    { line: 1, text: '{"from":"gpt","value":"Hello"}' },
  ]);
});

Deno.test("sniffLayout() tells the layout recordTextStream() with auto reads", async () => {
  const sniff = (text: string | Uint8Array, options: LineOptions = {}) =>
    sniffLayout(ReadableStream.from([typeof text === "string" ? bytesOf(text) : text]), options);
  assert.equal(await sniff(`\uFEFF${SHAREGPT_TURNS}`), "lines");
  assert.equal(await sniff(`\n\t${OPENAI_TURNS}\r\n[1]\n`), "lines");
  assert.equal(await sniff('{"a":1}\n'), "lines");
  assert.equal(await sniff(""), "lines");
  assert.equal(await sniff("{ \r\n}"), "values");
  assert.equal(await sniff(`[${SHAREGPT_TURNS}]`), "array");
  assert.equal(await sniff("[\n"), "array");
  assert.equal(await sniff('[{"from":"human","value":'), "array");
  assert.equal(await sniff(bytesOf('[{"from":"human","value":"', [0xff], '"}]')), "array");
  assert.equal(await sniff(SHAREGPT_TURNS, { maxLineBytes: SHAREGPT_TURNS.length - 1 }), "array");
});

Deno.test("sniffLayout() reads no further than the line limit and cancels the rest", async () => {
  const chunk = bytesOf(`${SHAREGPT_TURNS.slice(0, -1)},`.padEnd(1024, " "));
  let pulled = 0;
  let cancelled = false;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(chunk);
      pulled += chunk.length;
    },
    cancel() {
      cancelled = true;
    },
  }, { highWaterMark: 0 });
  assert.equal(await sniffLayout(source, { maxLineBytes: 64 * 1024 }), "array");
  assert.ok(cancelled);
  assert.ok(pulled <= 64 * 1024 + 2 * chunk.length, `read ${pulled} bytes`);
});

Deno.test("sniffLayout() knows a one-line array of records by its first element", async () => {
  const first = `[{"id":"}\\"{","conversations":${SHAREGPT_TURNS}},`;
  const padding = bytesOf(`{"id":2,"conversations":${SHAREGPT_TURNS}},`.padEnd(1024, " "));
  let pulled = 0;
  const source = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytesOf(first));
    },
    pull(controller) {
      controller.enqueue(padding);
      pulled += padding.length;
    },
  }, { highWaterMark: 0 });
  assert.equal(await sniffLayout(source, { maxLineBytes: 64 * 1024 }), "array");
  assert.equal(pulled, 0, "decided before reading past the first element");
  // A turn whose text holds braces, quotes and brackets is still a turn: JSONL.
  const turns = '[{"from":"human","value":"a } \\" ] {"},{"from":"gpt","value":"b"}]';
  for (const split of [1, 10, 20, turns.length]) {
    const chunks = [turns.slice(0, split), `${turns.slice(split)}\n${turns}\n`].map((part) =>
      bytesOf(part)
    );
    assert.equal(await sniffLayout(ReadableStream.from(chunks)), "lines", `split at ${split}`);
  }
});

Deno.test("recordTextStream() with auto holds no more than the limit of a huge [ line", async () => {
  const { source, peak } = hugeSource('[{"from":"human","value":"', '"}, {"next":1}]\n');
  const options = { format: "auto", maxLineBytes: 1024 * 1024, previewBytes: 9 } as const;
  const lines = await Array.fromAsync(source.pipeThrough(recordTextStream(options)));
  assert.deepEqual(lines, [
    {
      line: 1,
      error: "element is 67108891 bytes, over the limit of 1048576",
      preview: '{"from":"',
    },
    { line: 1, text: '{"next":1}' },
  ]);
  assert.ok(peak() < 16 * 1024 * 1024, `memory grew by ${peak()} bytes while reading the line`);
});

Deno.test("recordTextStream() rejects an unknown format", () => {
  const options = { format: "csv" } as unknown as RecordTextOptions;
  assert.throws(() => recordTextStream(options), TypeError);
});

Deno.test("recordTextStream() makes a fault that cut the bytes the last Line, on the record it cut", async () => {
  const fault = { reason: "the gzip data breaks off after 99 bytes", cut: true };
  const options: RecordTextOptions = { fault: () => fault };
  // A record cut in two is the fault's Line, its preview what was read of it: one reject.
  await assertEverySplit(bytesOf('{"a":1}\r\n\n{"b":"é'), () => recordTextStream(options), [
    { line: 1, text: '{"a":1}' },
    { line: 2, text: "" },
    { line: 3, error: fault.reason, preview: '{"b":"é', final: true },
  ]);
  // Cut at the end of a line: on the next line.
  await assertEverySplit(bytesOf('{"a":1}\n'), () => recordTextStream(options), [
    { line: 1, text: '{"a":1}' },
    { line: 2, error: fault.reason, preview: "", final: true },
  ]);
  assert.deepEqual(await read([], recordTextStream(options)), [
    { line: 1, error: fault.reason, preview: "", final: true },
  ]);
  // An element cut in two, or the array the break left open, is no "not closed" reject.
  const auto: RecordTextOptions = { format: "auto", previewBytes: 8, fault: () => fault };
  await assertEverySplit(bytesOf('[\n  {"a": 1},\n  {"b": [2,\n'), () => recordTextStream(auto), [
    { line: 2, text: '{"a": 1}' },
    { line: 3, error: fault.reason, preview: '{"b": [2', final: true },
  ]);
  await assertEverySplit(bytesOf('[\n  {"a": 1},\n'), () => recordTextStream(auto), [
    { line: 2, text: '{"a": 1}' },
    { line: 3, error: fault.reason, preview: "", final: true },
  ]);
});

Deno.test("recordTextStream() reads whole bytes to their end before a fault after them", async () => {
  // Junk after whole gzip data: the text is whole, a last line without newline included.
  const fault = {
    reason: "the gzip data ends after 99 bytes; the 4 bytes after it ...",
    cut: false,
  };
  await assertEverySplit(
    bytesOf('{"a":1}\n{"b":2}'),
    () => recordTextStream({ fault: () => fault }),
    [
      { line: 1, text: '{"a":1}' },
      { line: 2, text: '{"b":2}' },
      { line: 3, error: fault.reason, preview: "", final: true },
    ],
  );
  const auto: RecordTextOptions = { format: "auto", fault: () => fault };
  await assertEverySplit(bytesOf('[{"a": 1},\n{"b": 2}]'), () => recordTextStream(auto), [
    { line: 1, text: '{"a": 1}' },
    { line: 2, text: '{"b": 2}' },
    { line: 3, error: fault.reason, preview: "", final: true },
  ]);
  // An array that the data itself leaves open is still reported so.
  await assertEverySplit(bytesOf('[{"a": 1},\n{"b": 2}\n'), () => recordTextStream(auto), [
    { line: 1, text: '{"a": 1}' },
    {
      line: 2,
      error: "JSON array is not closed: line 2 could not be read",
      preview: '{"b": 2}\n',
    },
    { line: 3, error: fault.reason, preview: "", final: true },
  ]);
});

/** A record per index, and how `json.dump(indent=…)`, `jq` and `JSON.stringify` lay out arrays. */
const record = (i: number) => ({ id: i, turns: [{ text: `t${i}` }] });
const PRETTY_INDENTS = [2, "\t", 4] as const;

/**
 * `count` records as a pretty-printed array, and each element as jsonArrayStream() yields it:
 * 8 lines each, the k-th from line 2 + 8k.
 */
function prettyRecords(count: number, indent: number | string): { text: string; elements: Line[] } {
  const records = Array.from({ length: count }, (_, i) => record(i));
  const pad = typeof indent === "number" ? " ".repeat(indent) : indent;
  const elements = records.map((value, k) => ({
    line: 2 + 8 * k,
    text: JSON.stringify(value, null, indent).replaceAll("\n", `\n${pad}`),
  }));
  return { text: JSON.stringify(records, null, indent) + "\n", elements };
}

Deno.test("jsonArrayStream() reads on after an element whose string runs past its line", async () => {
  for (const indent of PRETTY_INDENTS) {
    const { text, elements } = prettyRecords(4, indent);
    // Element 1 spans lines 10 to 17; its string breaks at line 14, its closing line is 17.
    const broken = text.replace('"t1"', '"t1');
    await assertEverySplit(bytesOf(broken), () => jsonArrayStream({ previewBytes: 1 }), [
      elements[0],
      {
        line: 10,
        error: "element breaks off at line 14: a string runs past the end of its line; lines 10 " +
          "to 17 could not be read",
        preview: "{",
      },
      elements[2],
      elements[3],
    ]);
  }
});

Deno.test("jsonArrayStream() reads on after an element with a } missing", async () => {
  for (const indent of PRETTY_INDENTS) {
    const { text, elements } = prettyRecords(4, indent);
    const lines = text.split("\n");
    // Element 1's own closing line (17) loses its "}", or its turn's closing line (15) goes.
    const own = lines.with(16, lines[16].replace("}", "")).join("\n");
    const turn = lines.toSpliced(14, 1).join("\n");
    for (const [broken, shift] of [[own, 0], [turn, 1]] as const) {
      const next = 18 - shift;
      await assertEverySplit(bytesOf(broken), () => jsonArrayStream({ previewBytes: 1 }), [
        elements[0],
        {
          line: 10,
          error: `element is still open where line ${next} starts another at its indentation ` +
            `(a } or ] is missing): lines 10 to ${next - 1} could not be read`,
          preview: "{",
        },
        { ...elements[2], line: elements[2].line - shift },
        { ...elements[3], line: elements[3].line - shift },
      ]);
    }
  }
});

Deno.test("jsonArrayStream() says which lines an element left open at the end holds", async () => {
  const { text, elements } = prettyRecords(3, 2);
  // The last element's closing line goes: nothing starts after it, so nothing can be split off.
  const lines = text.split("\n");
  await assertEverySplit(
    bytesOf(lines.toSpliced(lines.length - 3, 1).join("\n")),
    () => jsonArrayStream({ previewBytes: 1 }),
    [
      elements[0],
      elements[1],
      {
        line: 18,
        error: "JSON array is not closed: lines 18 to 25 could not be read",
        preview: "{",
      },
    ],
  );
});

Deno.test("recordTextStream() with auto reads on after a broken pretty-printed object", async () => {
  // As `jq . file` or json.dumps(record, indent=2) per record write them: each "{" at column 0.
  const records = [0, 1, 2, 3].map((i) => JSON.stringify(record(i), null, 2));
  const elements = records.map((text, k) => ({ line: 1 + 8 * k, text }));
  const auto = () => recordTextStream({ format: "auto", previewBytes: 1 });
  const text = records.join("\n") + "\n";
  await assertEverySplit(bytesOf(text.replace('"t1"', '"t1')), auto, [
    elements[0],
    {
      line: 9,
      error: "element breaks off at line 13: a string runs past the end of its line; lines 9 to " +
        "16 could not be read",
      preview: "{",
    },
    elements[2],
    elements[3],
  ]);
  const lines = text.split("\n");
  await assertEverySplit(bytesOf(lines.toSpliced(15, 1).join("\n")), auto, [
    elements[0],
    {
      line: 9,
      error: "element is still open where line 16 starts another at its indentation (a } or ] " +
        "is missing): lines 9 to 15 could not be read",
      preview: "{",
    },
    { ...elements[2], line: 16 },
    { ...elements[3], line: 24 },
  ]);
});

Deno.test("jsonArrayStream() never splits valid elements laid out with lines at their indentation", async () => {
  // Valid JSON whose lines come back to the element's indentation: such a line is only a
  // checkpoint, dropped once the element closes as valid JSON.
  const text = '[\n  {"a":\n  {"b": [\n  {"c": 1}]}},\n  [\n  [1],\n  {"d": 2}],\n  {"e": 3}\n]';
  await assertEverySplit(bytesOf(text), () => jsonArrayStream(), [
    { line: 2, text: '{"a":\n  {"b": [\n  {"c": 1}]}}' },
    { line: 5, text: '[\n  [1],\n  {"d": 2}]' },
    { line: 8, text: '{"e": 3}' },
  ]);
  // Every line at column 0, what json.dump(indent=0) writes: each nested "{" is a checkpoint.
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const randomValue = (depth: number): unknown => {
    const kind = Math.floor(random() * (depth > 3 ? 2 : 4));
    if (kind === 0) return `s${Math.floor(random() * 100)}`;
    if (kind === 1) return Math.floor(random() * 100);
    const items = Array.from({ length: Math.floor(random() * 4) }, () => randomValue(depth + 1));
    return kind === 2 ? items : Object.fromEntries(items.map((item, i) => [`k${i}`, item]));
  };
  for (let round = 0; round < 100; round++) {
    const values = Array.from({ length: 1 + Math.floor(random() * 5) }, () => ({
      id: round,
      nested: randomValue(0),
    }));
    const flat = JSON.stringify(values, null, 2).replaceAll(/\n */g, "\n");
    const lines = await read([bytesOf(flat)], jsonArrayStream());
    assert.deepEqual(lines.map((line) => "text" in line ? JSON.parse(line.text) : line), values);
  }
});

Deno.test("jsonArrayStream() splits an element at its checkpoint once it is too long to be a record", async () => {
  // Valid, but over twice the limit: it can be no record, so it is held no further.
  const long = '[\n  {"a": [\n  {"b": "' + "x".repeat(60) + '"}\n  ]},\n  {"c": 1}\n]';
  // Over the limit before the line that starts another: split there at once.
  const late = '[\n  {"a": "' + "x".repeat(30) + '",\n  {"c": 1}\n]';
  const open = {
    line: 2,
    error: "element is still open where line 3 starts another at its indentation (a } or ] is " +
      "missing): line 2 could not be read",
    preview: '{"',
  };
  const options = { maxLineBytes: 30, previewBytes: 2 };
  await assertEverySplit(bytesOf(long), () => jsonArrayStream(options), [
    open,
    { line: 3, error: "element is 69 bytes, over the limit of 30", preview: '{"' },
    { line: 4, error: "unexpected content after the JSON array", preview: "}," },
    { line: 5, text: '{"c": 1}' },
    { line: 6, error: "unexpected content between JSON values", preview: "]" },
  ]);
  for (const maxLineBytes of [30, 1000]) {
    await assertEverySplit(
      bytesOf(late),
      () => jsonArrayStream({ maxLineBytes, previewBytes: 2 }),
      [
        open,
        { line: 3, text: '{"c": 1}' },
      ],
    );
  }
});

Deno.test("recordTextStream() with auto splits broken arrays the same whatever the chunks", async () => {
  // Random damage to pretty-printed arrays: a byte or a line gone, a string's newline left raw.
  let seed = 11;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const below = (n: number) => Math.floor(random() * n);
  for (let round = 0; round < 300; round++) {
    const records = Array.from({ length: 1 + below(4) }, (_, i) => ({
      id: i,
      turns: Array.from({ length: below(3) }, (_, t) => ({ text: `t${t} [{,}]` })),
    }));
    let text = JSON.stringify(records, null, [2, "\t", 0][below(3)]);
    const damage = below(3);
    if (damage === 0) {
      const at = below(text.length);
      text = text.slice(0, at) + text.slice(at + 1);
    } else if (damage === 1) {
      const lines = text.split("\n");
      text = lines.toSpliced(below(lines.length), 1).join("\n");
    } else {
      text = text.replace(/\[\{,\}\]/, "[\n]");
    }
    const bytes = bytesOf(text);
    const options = {
      format: "auto",
      maxLineBytes: [40, 1000][below(2)],
      previewBytes: 5,
    } as const;
    const whole = await read([bytes], recordTextStream(options));
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < bytes.length;) {
      const size = 1 + below(8);
      chunks.push(bytes.subarray(at, at + size));
      at += size;
    }
    assert.deepEqual(await read(chunks, recordTextStream(options)), whole, text);
  }
});
