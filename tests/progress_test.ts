import assert from "node:assert/strict";
import {
  countLines,
  createProgress,
  type ProgressOptions,
  type ProgressState,
} from "../src/progress.ts";

const CLEAR = "\r\x1b[2K";

const idle: ProgressState = {
  done: 0,
  total: 1000,
  rejected: 0,
  retries: 0,
  inputTokens: 0,
  outputTokens: 0,
  cost: null,
  inFlight: 0,
};

/** A progress display on a fake clock that records everything written. */
function harness(options: Partial<ProgressOptions> & { isTTY: boolean }) {
  const clock = { ms: 1_000_000 };
  const writes: string[] = [];
  const progress = createProgress({
    write: (text) => writes.push(text),
    now: () => clock.ms,
    ...options,
  });
  return { clock, writes, progress };
}

Deno.test("createProgress() on a TTY redraws one line at most every 100 ms", () => {
  const { clock, writes, progress } = harness({ isTTY: true });
  for (let done = 1; done <= 1000; done++) {
    clock.ms += 1; // 1000 updates over one second
    progress.update({ ...idle, done });
  }
  assert.ok(writes.length >= 9 && writes.length <= 11, `${writes.length} redraws`);
  for (const text of writes) {
    assert.ok(text.startsWith(CLEAR), JSON.stringify(text));
    assert.ok(!text.includes("\n"), JSON.stringify(text));
  }
});

Deno.test("createProgress() on a TTY shows count, percent, rate, ETA, tokens, cost, retries and rejects", () => {
  const { clock, writes, progress } = harness({ isTTY: true });
  clock.ms += 10_000;
  progress.update({
    ...idle,
    done: 250,
    rejected: 3,
    retries: 7,
    inputTokens: 1_234_567,
    outputTokens: 45_600,
    cost: 1.5,
    inFlight: 16,
  });
  assert.equal(
    writes.at(-1),
    `${CLEAR}250/1,000 (25.0%) | 25.0 conv/s | ETA 30s | 1.2M in 45.6k out tokens | $1.50 | ` +
      "7 retries | 3 rejected | 16 in flight",
  );
});

Deno.test("createProgress() without a total shows no percent and no ETA", () => {
  const { clock, writes, progress } = harness({ isTTY: true });
  clock.ms += 2_000;
  progress.update({ ...idle, total: null, done: 40 });
  assert.equal(
    writes.at(-1),
    `${CLEAR}40 done | 20.0 conv/s | 0 in 0 out tokens | 0 retries | 0 rejected`,
  );
  assert.doesNotMatch(writes.join(""), /%|ETA/);
});

Deno.test("createProgress() falls back to the total given at creation", () => {
  const { clock, writes, progress } = harness({ isTTY: true, total: 80 });
  clock.ms += 1_000;
  progress.update({ ...idle, total: null, done: 20 });
  assert.match(writes.at(-1) ?? "", /20\/80 \(25\.0%\) \| 20\.0 conv\/s \| ETA 3s/);
});

Deno.test("createProgress() off a TTY writes one plain line per interval", () => {
  const { clock, writes, progress } = harness({ isTTY: false });
  for (let second = 1; second <= 21; second++) {
    clock.ms += 1_000;
    progress.update({ ...idle, done: second * 10 });
  }
  assert.equal(writes.length, 4);
  assert.match(writes[0], /^\[5s\] 50\/1,000 \(5\.0%\) \| 10\.0 conv\/s \| ETA 1m35s \| .*\n$/);
  for (const text of writes) {
    assert.ok(text.endsWith("\n") && !text.slice(0, -1).includes("\n"), JSON.stringify(text));
    assert.ok(!text.includes("\r") && !text.includes("\x1b"), JSON.stringify(text));
  }
});

Deno.test("createProgress() honours a custom interval", () => {
  const { clock, writes, progress } = harness({ isTTY: false, intervalMs: 60_000 });
  for (let second = 1; second <= 150; second++) {
    clock.ms += 1_000;
    progress.update({ ...idle, done: second });
  }
  assert.equal(writes.length, 2);
});

Deno.test("createProgress() bases rate and ETA on the recent pace, not a past burst", () => {
  const { clock, writes, progress } = harness({ isTTY: false, intervalMs: 1_000 });
  // 900 cache hits in the first second, then 1 conversation per second.
  clock.ms += 1_000;
  progress.update({ ...idle, done: 900 });
  for (let second = 1; second <= 60; second++) {
    clock.ms += 1_000;
    progress.update({ ...idle, done: 900 + second });
  }
  assert.match(writes.at(-1) ?? "", /\| 1\.0 conv\/s \| ETA 40s \|/);
});

Deno.test("createProgress() finish ends the live line with a newline and stops updates", () => {
  const { clock, writes, progress } = harness({ isTTY: true });
  progress.update({ ...idle, done: 1 });
  clock.ms += 4_000;
  progress.finish({ ...idle, done: 1000 });
  assert.equal(
    writes.at(-2),
    `${CLEAR}1,000/1,000 (100.0%) | 250.0 conv/s | ETA 0s | 0 in 0 out tokens | 0 retries | 0 rejected`,
  );
  assert.equal(writes.at(-1), "\n");
  const count = writes.length;
  clock.ms += 1_000;
  progress.update({ ...idle, done: 1000 });
  progress.finish({ ...idle, done: 1000 });
  assert.equal(writes.length, count);
});

Deno.test("createProgress() finish off a TTY writes the final line right away", () => {
  const { clock, writes, progress } = harness({ isTTY: false });
  clock.ms += 1_000;
  progress.update({ ...idle, done: 10 });
  assert.equal(writes.length, 0);
  progress.finish({ ...idle, done: 10, total: 10 });
  assert.equal(writes.length, 1);
  assert.match(writes[0], /^\[1s\] 10\/10 \(100\.0%\) \| 10\.0 conv\/s \| ETA 0s .*\n$/);
});

Deno.test("createProgress() message prints above the live line and redraws it", () => {
  const { writes, progress } = harness({ isTTY: true });
  progress.update({ ...idle, done: 5 });
  const live = writes[0].slice(CLEAR.length);
  progress.message("upstream unavailable, retrying in 8 s (attempt 3/6)");
  assert.equal(writes[1], `${CLEAR}upstream unavailable, retrying in 8 s (attempt 3/6)\n${live}`);
  const plain = harness({ isTTY: false });
  plain.progress.message("hello");
  assert.deepEqual(plain.writes, ["hello\n"]);
});

Deno.test("createProgress() cuts the live line to the terminal width", () => {
  const { writes, progress } = harness({ isTTY: true, columns: 30 });
  progress.update({ ...idle, done: 5, inputTokens: 123_456_789, cost: 12 });
  assert.equal(writes[0].length, CLEAR.length + 29);
});

async function withFile(content: string | Uint8Array, check: (path: string) => Promise<void>) {
  const path = await Deno.makeTempFile();
  try {
    if (typeof content === "string") await Deno.writeTextFile(path, content);
    else await Deno.writeFile(path, content);
    await check(path);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("countLines() counts lines with and without a final newline", async () => {
  const cases: [string, number][] = [
    ["", 0],
    ["\n", 1],
    ["a", 1],
    ["a\n", 1],
    ["a\nb", 2],
    ["a\nb\n", 2],
    ["a\n\n\nb\n", 4],
    ["a\r\nb\r\n", 2],
    ["a\r\nb", 2],
    ['{"x":"é"}\r\n{"y":"🧠"}', 2],
  ];
  for (const [content, expected] of cases) {
    await withFile(content, async (path) => {
      assert.equal(await countLines(path), expected, JSON.stringify(content));
    });
  }
});

Deno.test("countLines() counts across read chunks", async () => {
  // 9 MiB spans several 4 MiB chunks; one line ends exactly at the first chunk boundary.
  const size = 9 * 1024 * 1024;
  const bytes = new Uint8Array(size).fill(0x61);
  let expected = 0;
  for (let at = 99; at < size; at += 100) {
    bytes[at] = 10;
    expected += 1;
  }
  bytes[4 * 1024 * 1024 - 1] = 10;
  expected += 1;
  await withFile(bytes, async (path) => {
    assert.equal(await countLines(path), expected + 1); // the tail has no newline
  });
});

Deno.test("countLines() rejects with NotFound for a missing file", async () => {
  await assert.rejects(countLines("/nonexistent/cotfit/input.jsonl"), Deno.errors.NotFound);
});
