import assert from "node:assert/strict";
import { join } from "node:path";
import { countTokens as libraryCount } from "gpt-tokenizer";
import { createApp } from "../server.ts";
import { resolveOptions } from "../src/config.ts";
import { createEngine } from "../src/engine.ts";
import { EXIT } from "../src/run.ts";
import { MAX_PRETOKEN_LENGTH } from "../src/linear_count.ts";
import { loadedTokenizer, loadTokenizer, tokenBound } from "../src/tokenizer.ts";
import { convertInProcess } from "./cli_helpers.ts";
import { startFakeOpenAI } from "./fake_openai.ts";

// The tokenizer loads once per process, and each test file runs in its own: the tests that
// check it is never loaded come first.

/** A multi-turn chat with some non-ASCII prose, well within the default 3,000-token history. */
function chat(id: number): string {
  const prose = `Record ${id}: it’s a long answer — with “quotes”, café and naïve. `.repeat(12);
  return JSON.stringify({
    conversations: [
      { from: "system", value: "You are concise." },
      { from: "human", value: `Question ${id}?` },
      { from: "gpt", value: prose },
      { from: "human", value: `Follow-up ${id}?` },
      { from: "gpt", value: prose },
      { from: "human", value: `Last ${id}?` },
      { from: "gpt", value: `Done ${id}.` },
    ],
  });
}

Deno.test("runConversion() never loads the tokenizer when the server reports usage and histories fit", async () => {
  await using fake = await startFakeOpenAI();
  const dir = await Deno.makeTempDir({ prefix: "cotfit-tokenizer-" });
  try {
    const input = join(dir, "chats.jsonl");
    await Deno.writeTextFile(input, [1, 2, 3].map(chat).join("\n") + "\n");
    const code = await convertInProcess(input, join(dir, "out"), fake.url);
    assert.equal(code, EXIT.ok);
    const usage = JSON.parse(await Deno.readTextFile(join(dir, "out", "usage.json")));
    assert.equal(usage.calls, 9);
    assert.equal(usage.estimatedCalls, 0);
    assert.equal(loadedTokenizer(), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the server never loads the tokenizer when the upstream reports usage and histories fit", async () => {
  await using fake = await startFakeOpenAI();
  const options = resolveOptions({
    flags: { model: "m", "base-url": fake.url },
    positionals: ["serve"],
    env: {},
  });
  const engine = await createEngine(options, { cachePath: null, now: () => performance.now() });
  try {
    const app = createApp({ engine, options });
    const response = await app.request("/v1/rephrase", {
      method: "POST",
      body: [4, 5].map(chat).join("\n") + "\n",
    });
    const lines = (await response.text()).trim().split("\n");
    assert.equal(lines.length, 2);
    assert.ok(lines.every((line) => "conversations" in JSON.parse(line)), lines.join("\n"));
  } finally {
    await engine.close();
  }
  assert.equal(loadedTokenizer(), null);
});

/** The parts of `deno info --json` read here. */
interface ModuleGraph {
  roots: string[];
  redirects: Record<string, string>;
  modules: {
    specifier: string;
    dependencies?: { code?: { specifier: string }; isDynamic?: boolean }[];
  }[];
}

/** The specifiers `entry` imports statically, directly or not (type-only imports excluded). */
async function staticImports(entry: string): Promise<Set<string>> {
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL(entry, import.meta.url).pathname],
    stdout: "piped",
    stderr: "null",
  }).output();
  const graph = JSON.parse(new TextDecoder().decode(stdout)) as ModuleGraph;
  const modules = new Map(graph.modules.map((module) => [module.specifier, module]));
  const seen = new Set<string>();
  const queue = [...graph.roots];
  while (queue.length > 0) {
    const specifier = queue.pop()!;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    const module = modules.get(graph.redirects[specifier] ?? specifier);
    for (const dependency of module?.dependencies ?? []) {
      if (dependency.code && !dependency.isDynamic) queue.push(dependency.code.specifier);
    }
  }
  return seen;
}

Deno.test("main.ts and server.ts import gpt-tokenizer only on demand", async () => {
  for (const entry of ["../main.ts", "../server.ts"]) {
    const imports = [...await staticImports(entry)];
    assert.ok(imports.some((specifier) => specifier.startsWith("npm:")), `${entry} uses npm`);
    assert.deepEqual(imports.filter((specifier) => specifier.includes("gpt-tokenizer")), []);
  }
});

Deno.test("loadTokenizer() counts o200k tokens of known strings", async () => {
  const { countTokens } = await loadTokenizer();
  assert.equal(countTokens(""), 0);
  assert.equal(countTokens("Hello, world!"), 4);
  assert.equal(countTokens("The quick brown fox jumps over the lazy dog."), 10);
  assert.equal(countTokens("hello ".repeat(100)), 101);
  assert.equal(countTokens("日本語のテキスト"), 6);
});

Deno.test("loadTokenizer() loads once and is then available synchronously", async () => {
  const [first, second] = await Promise.all([loadTokenizer(), loadTokenizer()]);
  assert.equal(first, second);
  assert.equal(loadedTokenizer(), first);
});

Deno.test("loadTokenizer() counts special-token text as plain text", async () => {
  // Scraped datasets hold these strings; the library's defaults throw on them.
  const { countTokens, isWithinTokenLimit } = await loadTokenizer();
  assert.equal(countTokens("<|endoftext|>"), 7);
  assert.equal(countTokens("a <|endofprompt|> b"), 9);
  assert.equal(isWithinTokenLimit("<|endoftext|>", 7), true);
  assert.equal(isWithinTokenLimit("<|endoftext|>", 6), false);
});

Deno.test("tokenBound() is never below the o200k count", async () => {
  const { countTokens } = await loadTokenizer();
  const texts = [
    "",
    "Hello, world!",
    "It’s a dash — and “quotes”.",
    "日本語のテキスト".repeat(20),
    "emoji 😀👍🏽 and flags 🇫🇷🇯🇵",
    "e\u0301 combining accents a\u0308",
    "\u00a0non-breaking\u2009spaces",
    "<|endoftext|>",
    "x".repeat(5000),
  ];
  for (const text of texts) {
    const bound = tokenBound(text);
    assert.ok(bound >= countTokens(text), `${text.slice(0, 30)}: ${bound}`);
    assert.ok(bound >= new TextEncoder().encode(text).length, "at least the UTF-8 size");
  }
  assert.equal(tokenBound("Hello, world!"), 13);
  assert.equal(tokenBound("café"), 6);
});

/** The plain library's counts of `text` cut every {@linkcode MAX_PRETOKEN_LENGTH} characters. */
function sumOfPieces(text: string): number {
  let total = 0;
  for (let start = 0; start < text.length; start += MAX_PRETOKEN_LENGTH) {
    total += libraryCount(text.slice(start, start + MAX_PRETOKEN_LENGTH), {
      disallowedSpecial: new Set(),
    });
  }
  return total;
}

Deno.test("loadTokenizer() counts long text without word breaks by pieces", async () => {
  const { countTokens, isWithinTokenLimit } = await loadTokenizer();
  // The library's own pre-tokenizing regex overflows the stack on this one (15 MB of UTF-8).
  const hanzi = "的".repeat(5_000_000);
  assert.equal(countTokens(hanzi), sumOfPieces(hanzi));
  // Merging one 1 MB pre-token whole would take hours.
  const megabyte = 1 << 20;
  assert.equal(countTokens("x".repeat(megabyte)), megabyte / 8);
  let state = 1;
  const dna = Array.from({ length: megabyte }, () => "ACGT"[(state = (state * 5 + 1) % 4093) % 4]);
  const sequence = dna.join("");
  assert.equal(countTokens(sequence), sumOfPieces(sequence));
  assert.equal(isWithinTokenLimit(sequence, 100), false);
  assert.equal(isWithinTokenLimit(sequence, megabyte), true);
});

Deno.test("loadTokenizer() counts up to a limit, and past it returns more", async () => {
  const { countTokensUpTo } = await loadTokenizer();
  const hundred = "hello ".repeat(99);
  assert.equal(countTokensUpTo(hundred, 100), 100);
  assert.equal(countTokensUpTo(hundred, 1000), 100);
  assert.ok(countTokensUpTo(hundred, 99) > 99);
  assert.ok(countTokensUpTo("ACGT".repeat(1 << 20), 3000) > 3000);
  assert.equal(countTokensUpTo("", 0), 0);
});
