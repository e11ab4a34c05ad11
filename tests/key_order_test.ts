import assert from "node:assert/strict";
import {
  carryKeyOrder,
  learnKeyOrder,
  mayHaveIndexKeys,
  stringifyInSourceOrder,
} from "../src/key_order.ts";

/** `JSON.parse` keeping every number's text, as cotfit's reviver does for such records. */
function parse(text: string): unknown {
  const raw = JSON as unknown as { rawJSON(text: string): unknown };
  return JSON.parse(
    text,
    (_key, value, context?: { source?: string }) =>
      typeof value === "number" && context?.source !== undefined &&
        String(value) !== context.source
        ? raw.rawJSON(context.source)
        : value,
  );
}

/** A small seeded PRNG (mulberry32), so the generated cases are the same every run. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A JSON text built member by member, and what it reads as, written compactly in its order. */
interface Generated {
  readonly text: string;
  readonly compact: string;
}

const KEYS = [
  "a",
  "id",
  "0",
  "1",
  "2",
  "10",
  "2024",
  "4294967294",
  "4294967295",
  "01",
  "-1",
  "1.5",
  "__proto__",
  'x"y',
  "k\\",
  "\ud800",
  "é",
];
const LEAVES = [
  '"s"',
  "1",
  "1.50",
  "12345678901234567890",
  "1e400",
  "-0",
  "true",
  "null",
  '"a\\"b"',
  '"\\\\"',
  '"\\ud800"',
  '"x:\\"1\\": y"',
  '"\\u0031"',
];

/**
 * Random JSON with integer-like keys (some escaped), keys given twice, white space and the
 * values whose text is easy to get wrong; `compact` is the order a reader of the text expects.
 */
function generate(next: () => number, depth = 0): Generated {
  const pick = <T>(items: readonly T[]) => items[Math.floor(next() * items.length)];
  const space = () => pick(["", "", "", " ", "\n  ", "\t"]);
  const roll = next();
  if (depth > 4 || roll < 0.4) {
    const text = pick(LEAVES);
    return { text, compact: JSON.stringify(parse(text)) };
  }
  const count = Math.floor(next() * 5);
  if (roll < 0.75) {
    const members = new Map<string, string>();
    const texts: string[] = [];
    for (let i = 0; i < count; i++) {
      const key = pick(KEYS);
      const value = generate(next, depth + 1);
      const keyText = /^\d+$/.test(key) && next() < 0.3
        ? `"${[...key].map((digit) => next() < 0.5 ? `\\u003${digit}` : digit).join("")}"`
        : JSON.stringify(key);
      texts.push(`${keyText}${space()}:${space()}${value.text}`);
      members.set(key, value.compact); // first place, last value, as JSON.parse keeps them
    }
    return {
      text: `{${space()}${texts.join(`${space()},${space()}`)}${space()}}`,
      compact: `{${[...members].map(([key, value]) => `${JSON.stringify(key)}:${value}`)}}`,
    };
  }
  const items = Array.from({ length: count }, () => generate(next, depth + 1));
  return {
    text: `[${space()}${items.map((item) => item.text).join(`${space()},`)}]`,
    compact: `[${items.map((item) => item.compact).join(",")}]`,
  };
}

Deno.test("mayHaveIndexKeys() finds every integer-like key, however it is written", () => {
  for (
    const text of [
      '{"0":1}',
      '{"a":1,"2024":2}',
      '{"a":{"b":[{"10" : 1}]}}',
      '{"7"\n\t:1}',
      '{"\\u0032":1}',
      '{"1\\u00302":1}',
      '{"01":1,"3":2}',
    ]
  ) {
    assert.equal(mayHaveIndexKeys(text), true, text);
  }
  for (
    const text of [
      '{"id":"2024","v2":1,"at":"10:30","n":12}',
      '{"-1":2,"1.5":3,"a1":4}',
      '{"text":"Answer: 42"}',
      '{"a":"\\u003c"}',
      "[]",
      "",
    ]
  ) {
    assert.equal(mayHaveIndexKeys(text), false, text);
  }
});

Deno.test("learnKeyOrder() and stringifyInSourceOrder() write JSON back in the text's order", () => {
  const next = random(11);
  let reordered = 0;
  for (let i = 0; i < 3_000; i++) {
    const { text, compact } = generate(next);
    const value = parse(text);
    if (/"(0|[1-9]\d*)"\s*:/.test(text)) assert.equal(mayHaveIndexKeys(text), true, text);
    if (learnKeyOrder(text, value)) reordered++;
    assert.equal(stringifyInSourceOrder(value), compact, text);
  }
  assert.ok(reordered > 300, `${reordered} texts had keys JavaScript reorders`);
});

Deno.test("stringifyInSourceOrder() is JSON.stringify for values with nothing noted", () => {
  const next = random(5);
  for (let i = 0; i < 1_000; i++) {
    const value = parse(generate(next).text);
    assert.equal(stringifyInSourceOrder(value), JSON.stringify(value));
  }
  const odd = {
    a: undefined,
    b: [undefined, () => 1, Symbol("s"), NaN, -0, Infinity],
    c: () => 1,
    "\udc00": "\ud83d\ude00\ud800",
  };
  assert.equal(stringifyInSourceOrder(odd), JSON.stringify(odd));
  for (const leaf of ["x", 1, null, true, undefined]) {
    assert.equal(stringifyInSourceOrder(leaf), JSON.stringify(leaf));
  }
});

Deno.test("carryKeyOrder() gives a copy the source order, new keys after it", () => {
  const text = '{"role":"assistant","content":"a","1":{"b":1,"0":2}}';
  const turn = parse(text) as Record<string, unknown>;
  assert.equal(learnKeyOrder(text, turn), true);
  const copy = carryKeyOrder(turn, { ...turn, content: "b" });
  assert.equal(
    stringifyInSourceOrder(carryKeyOrder(copy, { ...copy, extra: [] })),
    '{"role":"assistant","content":"b","1":{"b":1,"0":2},"extra":[]}',
  );
  assert.equal(stringifyInSourceOrder(turn), text, "the original is unchanged");
  const plain = { "1": 1, a: 2 };
  assert.equal(
    stringifyInSourceOrder(carryKeyOrder(plain, { ...plain, b: 3 })),
    '{"1":1,"a":2,"b":3}',
    "nothing noted: JavaScript's order",
  );
});

Deno.test("learnKeyOrder() and stringifyInSourceOrder() take any depth without recursion", () => {
  const depth = 30_000;
  const text = `{"a":${'{"b":[],"1":'.repeat(depth)}0${"}".repeat(depth)},"2":{"3":1,"c":2}}`;
  const value = JSON.parse(text);
  assert.equal(learnKeyOrder(text, value), true);
  assert.equal(stringifyInSourceOrder(value), text);
});
