import assert from "node:assert/strict";
import { countTokens, isWithinTokenLimit } from "gpt-tokenizer";
import { O200K_TOKEN_SPLIT_REGEX } from "gpt-tokenizer/encodingParams/constants";
import { linearCounter, MAX_PRETOKEN_LENGTH } from "../src/linear_count.ts";

const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

/** The o200k library's count, as tokenizer.ts gives it, and the longest pre-token it was given. */
function spiedLibrary(): { count: (text: string, limit: number) => number; longest: () => number } {
  let longest = 0;
  return {
    count: (text, limit) => {
      for (const [preToken] of text.matchAll(O200K_TOKEN_SPLIT_REGEX)) {
        longest = Math.max(longest, preToken.length);
      }
      if (limit === Infinity) return countTokens(text, PLAIN_TEXT);
      const within = isWithinTokenLimit(text, limit, PLAIN_TEXT);
      return within === false ? limit + 1 : within;
    },
    longest: () => longest,
  };
}

/** A seeded stream of characters drawn from `alphabet` (mulberry32), `length` code points. */
function randomText(length: number, alphabet: string, seed: number): string {
  const chars = [...alphabet];
  let state = seed;
  const out: string[] = [];
  for (let i = 0; i < length; i++) {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out.push(chars[(((t ^ (t >>> 14)) >>> 0) / 4294967296 * chars.length) | 0]);
  }
  return out.join("");
}

/** Prose, code, chat and scripts without spaces, as datasets hold them: counted exactly. */
function normalTexts(): string[] {
  const src = new URL("../src/", import.meta.url);
  const code = [...Deno.readDirSync(src)].map((entry) =>
    Deno.readTextFileSync(new URL(entry.name, src))
  );
  // Not its tables: the widest has a 287-character row of dashes, one o200k pre-token.
  const readme = Deno.readTextFileSync(new URL("../README.md", import.meta.url))
    .split("\n\n")
    .filter((paragraph) => !paragraph.startsWith("|"));
  return [
    "",
    "Hello, world!",
    "I'll say it's done; they've gone. DON'T SHOUT. McDonald's iPhone XMLHttpRequest",
    "Der Donaudampfschifffahrtsgesellschaftskapitän trinkt Kaffee für 3,50 €.",
    "日本語のテキストは、スペースを使わずに書かれます。東京は日本の首都です。".repeat(20),
    "中文文本通常没有空格，但有标点符号。北京是中国的首都。".repeat(20),
    "ภาษาไทยเขียนติดกันโดยไม่เว้นวรรคระหว่างคำ แต่เว้นวรรคระหว่างประโยค ".repeat(20),
    "Русский текст с пунктуацией, цифрами 12345 и «кавычками». ".repeat(20),
    "emoji 😀👍🏽 and flags 🇫🇷🇯🇵 — a family 👨‍👩‍👧‍👦!",
    "e\u0301 combining a\u0308 \u00a0non-breaking\u2009thin",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    '| a | b |\n| ------ | ------ |\n| 1 | 2 |\n\n```json\n{"k": [1, 2, 3]}\n```',
    "   indented\n\n\n\ttabs\r\nCRLF lines\r\n  trailing   ",
    "<|endoftext|> and <|im_start|>user text<|im_end|>",
    "3.14159265358979323846264338327950288419716939937510 and 1,000,000",
    "-".repeat(120) + "\n" + " ".repeat(200) + "x",
    ...readme,
    readme.join("\n\n"),
    ...code,
  ];
}

Deno.test("linearCounter() counts normal text exactly, in one call to the encoder", () => {
  for (const text of normalTexts()) {
    const calls: string[] = [];
    const count = linearCounter((piece) => {
      calls.push(piece);
      return countTokens(piece, PLAIN_TEXT);
    });
    assert.equal(count(text), countTokens(text, PLAIN_TEXT), text.slice(0, 80));
    assert.deepEqual(calls, text === "" ? [] : [text]);
  }
});

Deno.test("linearCounter() never gives the encoder a pre-token longer than the bound", () => {
  const megabyte = 1 << 20;
  const texts = [
    randomText(megabyte, "abcdefghijklmnopqrstuvwxyz", 1),
    "x".repeat(megabyte),
    "ACGT".repeat(1000),
    "Here is a sequence: " + randomText(5000, "ACGT", 2) + ". What is its GC content?",
    randomText(3000, "的是不了人我在有他这", 3),
    randomText(3000, "😀👍🎉🔥", 4),
    "\u0301".repeat(3000),
    " ".repeat(3000) + "x",
    "\n".repeat(3000),
    "/\n".repeat(1500),
    "=".repeat(3000) + "\n" + "-".repeat(3000),
    "word ".repeat(100) + "y".repeat(3000) + " word".repeat(100),
  ];
  for (const text of texts) {
    const library = spiedLibrary();
    const count = linearCounter(library.count);
    assert.ok(count(text) > 0);
    assert.ok(
      library.longest() <= MAX_PRETOKEN_LENGTH,
      `${library.longest()}: ${text.slice(0, 40)}`,
    );
  }
});

Deno.test("linearCounter() counts a long run within one token per piece of the exact count", () => {
  // Long enough to need many pieces, short enough that the library's exact count is quick.
  const texts = [
    randomText(6000, "abcdefghijklmnopqrstuvwxyz", 5),
    randomText(6000, "ACGT", 6),
    "Sequence: " + randomText(6000, "acgt", 7) + ", done.",
    randomText(3000, "的是不了人我在有他这中大来上国个到说们为子和你地出道也时年", 8),
    randomText(3000, "😀👍🎉🔥🚀", 9),
    randomText(3000, "=-+*#@!%^&()[]{}<>?", 10),
    "ab".repeat(3000),
  ];
  const count = linearCounter(spiedLibrary().count);
  for (const text of texts) {
    const exact = countTokens(text, PLAIN_TEXT);
    const pieces = Math.ceil(text.length / MAX_PRETOKEN_LENGTH);
    const counted = count(text);
    assert.ok(Math.abs(counted - exact) <= pieces, `${counted} vs ${exact}: ${text.slice(0, 40)}`);
  }
});

Deno.test("linearCounter() counts 1 MB runs as the sum of their pieces", () => {
  const megabyte = 1 << 20;
  const count = linearCounter(spiedLibrary().count);
  // Eight x's are one o200k token; every piece holds a whole number of them.
  assert.equal(countTokens("x".repeat(4096), PLAIN_TEXT), 512);
  assert.equal(count("x".repeat(megabyte)), megabyte / 8);
  // One 1 MB word: its pieces' exact counts, each within one token of the merges the cut lost.
  const word = randomText(megabyte, "abcdefghijklmnopqrstuvwxyz", 11);
  let pieces = 0;
  for (let start = 0; start < word.length; start += MAX_PRETOKEN_LENGTH) {
    pieces += countTokens(word.slice(start, start + MAX_PRETOKEN_LENGTH), PLAIN_TEXT);
  }
  assert.equal(count(word), pieces);
  assert.ok(pieces < new TextEncoder().encode(word).length);
});

Deno.test("linearCounter() stops giving the encoder text once past the limit", () => {
  const seen: string[] = [];
  const count = linearCounter((text, limit) => {
    seen.push(text);
    return Math.min(text.length, limit + 1);
  });
  assert.ok(count("x".repeat(1 << 20), 1000) > 1000);
  assert.equal(seen.length, Math.ceil(1001 / MAX_PRETOKEN_LENGTH));
  seen.length = 0;
  assert.equal(count("x".repeat(1 << 20)), 1 << 20);
  assert.equal(seen.length, (1 << 20) / MAX_PRETOKEN_LENGTH);
});

Deno.test("linearCounter() counts the text around a long run, and never splits a surrogate pair", () => {
  const seen: string[] = [];
  const count = linearCounter((text) => {
    seen.push(text);
    return text.length;
  });
  const emoji = "😀".repeat(1000);
  const text = "Before it. " + emoji + " After it.";
  assert.equal(count(text), text.length);
  assert.equal(seen.join(""), text);
  assert.equal(seen[0], "Before it. ");
  assert.equal(seen.at(-1), " After it.");
  for (const piece of seen) assert.ok(piece.isWellFormed(), JSON.stringify(piece.slice(-2)));
});
