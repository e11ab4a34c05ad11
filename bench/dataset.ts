/**
 * Synthetic ShareGPT datasets for the benchmarks, streamed to disk so a 1 GB input never sits in
 * memory. Every conversation is unique (its number is in the question), so neither the cache nor
 * in-run dedupe can shortcut a call.
 *
 * Requires `--allow-write` for the output file.
 *
 * @module
 */

/** Options of {@linkcode writeDataset}. */
export interface DatasetOptions {
  /** Stop after this many conversations (whichever of `count` and `bytes` comes first). */
  count?: number;
  /** Stop once the file holds at least this many bytes. */
  bytes?: number;
  /**
   * User/assistant pairs per conversation; each assistant turn gets a thought.
   *
   * @default {1}
   */
  pairs?: number;
  /**
   * Seed of the word choice, so the same options give the same file.
   *
   * @default {1}
   */
  seed?: number;
}

/** What {@linkcode writeDataset} wrote. */
export interface DatasetInfo {
  readonly path: string;
  readonly conversations: number;
  readonly bytes: number;
}

const WORDS = (
  "the a model data system answer question value number function result method table process " +
  "energy water light market city river theory rule program memory network language history " +
  "simple quick careful large small first last every other many common useful clear strong " +
  "explains measures builds checks returns compares describes stores finds keeps turns makes"
).split(" ");
const TOPICS = [
  "How does a hash map keep lookups fast",
  "Why is the sky blue during the day",
  "What is the difference between a list and a tuple",
  "Explain how compound interest grows",
  "Summarise the causes of the French Revolution",
  "Write a function that reverses a string",
  "How do vaccines train the immune system",
  "What makes a good unit test",
];
// Flushed to the file in pieces this big: few syscalls, little memory.
const CHUNK_CHARS = 1 << 20;

/**
 * Writes a JSONL file of ShareGPT conversations until `count` or `bytes` is reached. Answers vary
 * from one sentence to a few paragraphs (about 1 KB per pair on average), with lists and code
 * now and then, as instruction datasets do.
 *
 * @param path The file to (over)write.
 * @param options Size, shape and seed.
 * @returns The path, conversation count and byte size.
 * @throws {RangeError} When neither `count` nor `bytes` is given.
 */
export async function writeDataset(path: string, options: DatasetOptions): Promise<DatasetInfo> {
  const { count = Infinity, bytes = Infinity, pairs = 1, seed = 1 } = options;
  if (count === Infinity && bytes === Infinity) {
    throw new RangeError("Cannot write dataset: give a count or a byte size");
  }
  const random = mulberry32(seed);
  const encoder = new TextEncoder();
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  let conversations = 0;
  let written = 0;
  let pending = "";
  while (conversations < count && written + pending.length < bytes) {
    pending += conversationLine(++conversations, pairs, random) + "\n";
    if (pending.length >= CHUNK_CHARS) {
      written += await writeAll(file, encoder.encode(pending));
      pending = "";
    }
  }
  if (pending !== "") written += await writeAll(file, encoder.encode(pending));
  return { path, conversations, bytes: written };
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<number> {
  let offset = 0;
  while (offset < data.length) offset += await file.write(data.subarray(offset));
  return data.length;
}

function conversationLine(n: number, pairs: number, random: () => number): string {
  const turns: { from: string; value: string }[] = [];
  for (let pair = 0; pair < pairs; pair++) {
    const topic = TOPICS[Math.floor(random() * TOPICS.length)];
    turns.push({ from: "human", value: `${topic} (case ${n}.${pair + 1})? ${sentence(random)}` });
    turns.push({ from: "gpt", value: answer(random) });
  }
  return JSON.stringify({ id: `bench-${n}`, source: "cotfit-bench", conversations: turns });
}

function answer(random: () => number): string {
  // Mostly short answers, some long ones: the mean lands near 1 KB.
  const sentences = 2 + Math.floor(random() ** 2 * 30);
  const shape = random();
  const parts: string[] = [];
  for (let i = 0; i < sentences; i++) {
    const text = sentence(random);
    parts.push(shape < 0.15 ? `${i + 1}. ${text}` : shape < 0.25 ? `- ${text}` : text);
  }
  const body = parts.join(shape < 0.25 ? "\n" : " ");
  return shape > 0.9 ? `${body}\n\n\`\`\`python\ndef f(x):\n    return x * 2\n\`\`\`` : body;
}

function sentence(random: () => number): string {
  const length = 6 + Math.floor(random() * 14);
  const words: string[] = [];
  for (let i = 0; i < length; i++) words.push(WORDS[Math.floor(random() * WORDS.length)]);
  const text = words.join(" ");
  return `${text[0].toUpperCase()}${text.slice(1)}.`;
}

/** A small seeded PRNG (mulberry32): same seed, same sequence. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
