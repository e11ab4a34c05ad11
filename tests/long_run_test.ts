import assert from "node:assert/strict";
import { join } from "node:path";
import { cliCommand, convertArgs, parseJsonl, runCli, tempTree } from "./cli_helpers.ts";
import { startFakeOpenAI } from "./fake_openai.ts";

type Json = Record<string, unknown>;

function dataset(count: number, multiTurnEvery = 3): string {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const conversations = [
      { from: "human", value: `Question number ${i}: what is ${i} times 3?` },
      { from: "gpt", value: `${i} times 3 is ${i * 3}.` },
    ];
    if (i % multiTurnEvery === 0) {
      conversations.push(
        { from: "human", value: `And ${i} plus 1?` },
        { from: "gpt", value: `${i} plus 1 is ${i + 1}.` },
      );
    }
    lines.push(JSON.stringify({ id: `r${i}`, conversations }));
  }
  return lines.join("\n") + "\n";
}

function turnsIn(count: number, multiTurnEvery = 3): number {
  return count + Math.ceil(count / multiTurnEvery);
}

function spawnCli(
  args: string[],
  options: { env?: Record<string, string> } = {},
): Deno.ChildProcess {
  return cliCommand(args, options).spawn();
}

async function waitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

Deno.test("long run: kill -9 then rerun gives byte-identical outputs and re-pays only in-flight calls", async () => {
  const records = 120;
  const concurrency = 8;
  const root = await tempTree({ "in/data.jsonl": dataset(records) });
  const ideal = turnsIn(records);

  await using reference = await startFakeOpenAI();
  const args = (url: string, out: string) => [
    join(root, "in/data.jsonl"),
    "-o",
    join(root, out),
    "--base-url",
    url,
    "--model",
    "m",
    "--concurrency",
    String(concurrency),
    "-q",
  ];
  const clean = await runCli(args(reference.url, "clean"));
  assert.equal(clean.code, 0, clean.stderr);
  assert.equal(reference.stats.requests, ideal);

  await using fake = await startFakeOpenAI({ latencyMs: 40 });
  const child = spawnCli(args(fake.url, "resumed"));
  await waitFor(() => fake.stats.requests >= ideal / 2);
  child.kill("SIGKILL");
  const status = await child.status;
  assert.equal(status.signal, "SIGKILL");
  // A killed run never leaves a file that looks finished.
  await assert.rejects(() => Deno.stat(join(root, "resumed/data.jsonl")), Deno.errors.NotFound);
  const beforeRerun = fake.stats.requests;

  const rerun = await runCli(args(fake.url, "resumed"));
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.equal(
    await Deno.readTextFile(join(root, "resumed/data.jsonl")),
    await Deno.readTextFile(join(root, "clean/data.jsonl")),
  );
  const repaid = fake.stats.requests - ideal;
  assert.ok(repaid <= concurrency, `re-paid ${repaid} calls (killed after ${beforeRerun})`);
  const usage = JSON.parse(await Deno.readTextFile(join(root, "resumed/usage.json")));
  assert.ok(usage.cacheHits >= beforeRerun - concurrency, `cache hits ${usage.cacheHits}`);
});

Deno.test("long run: changing the preface or suffix costs no LLM call", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({ "data.jsonl": dataset(20) });
  const base = [
    ...convertArgs(join(root, "data.jsonl"), join(root, "out"), fake.url),
  ];
  assert.equal((await runCli(base)).code, 0);
  const first = parseJsonl(await Deno.readTextFile(join(root, "out/data.jsonl"))) as Json[];
  const calls = fake.stats.requests;
  assert.equal(calls, turnsIn(20));

  const again = await runCli([...base, "--cot-preface", "Reasoning:", "--cot-suffix", "Final:"]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(fake.stats.requests, calls, "no new call");
  const second = parseJsonl(await Deno.readTextFile(join(root, "out/data.jsonl"))) as Json[];
  const answer = (record: Json, turn: number) =>
    String((record.conversations as Json[])[turn].value);
  assert.equal(
    answer(second[0], 1),
    answer(first[0], 1).replace(/^Thought Process:/, "Reasoning:").replace(
      "\n\nAnswer:\n",
      "\nFinal:\n",
    ),
  );
});

Deno.test("long run: identical turns within a dataset are generated once", async () => {
  await using fake = await startFakeOpenAI({ latencyMs: 20 });
  const record = (id: number) =>
    JSON.stringify({
      id,
      conversations: [{ from: "human", value: "Same question?" }, {
        from: "gpt",
        value: "Same answer.",
      }],
    });
  const root = await tempTree({ "dup.jsonl": [1, 2, 3, 4, 5].map(record).join("\n") });
  const result = await runCli([
    ...convertArgs(join(root, "dup.jsonl"), join(root, "out"), fake.url),
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(fake.stats.requests, 1);
  const out = parseJsonl(await Deno.readTextFile(join(root, "out/dup.jsonl"))) as Json[];
  assert.deepEqual(out.map((r) => r.id), [1, 2, 3, 4, 5]);
  const usage = JSON.parse(await Deno.readTextFile(join(root, "out/usage.json")));
  assert.equal(usage.calls, 1);
  assert.equal(usage.dedupeHits, 4);
});

Deno.test("long run: with --no-cache, a later file's repeat of a thought is counted as a duplicate, not a cache hit", async () => {
  await using fake = await startFakeOpenAI();
  const record = JSON.stringify({
    conversations: [{ from: "human", value: "Same?" }, { from: "gpt", value: "Same." }],
  });
  const root = await tempTree({
    "in/a.jsonl": record + "\n",
    "in/b.jsonl": `${record}\n${record}\n`,
  });
  const result = await runCli([
    ...convertArgs(join(root, "in"), join(root, "out"), fake.url),
    "--no-cache",
    "-q",
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(fake.stats.requests, 1);
  const usage = JSON.parse(await Deno.readTextFile(join(root, "out/usage.json")));
  assert.deepEqual([usage.calls, usage.cacheHits, usage.dedupeHits], [1, 0, 2]);
});

Deno.test("long run: --dry-run makes no call and estimates tokens within 15% of a real run", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({ "data.jsonl": dataset(60) + "not json\n" });
  const common = [
    ...convertArgs(join(root, "data.jsonl"), join(root, "out"), fake.url),
  ];
  const dry = await runCli([...common, "--dry-run", "--price-input", "1", "--price-output", "2"]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.equal(fake.stats.requests, 0);
  await assert.rejects(() => Deno.stat(join(root, "out")), Deno.errors.NotFound);
  assert.match(dry.stderr, /61 read, 1 would be rejected/);
  assert.match(dry.stderr, new RegExp(`calls +${turnsIn(60)} needed`));
  const estimatedIn = Number(dry.stderr.match(/~([\d,]+) in/)![1].replaceAll(",", ""));

  const real = await runCli(common);
  assert.equal(real.code, 1);
  const usage = JSON.parse(await Deno.readTextFile(join(root, "out/usage.json")));
  assert.equal(usage.calls, turnsIn(60));
  const ratio = estimatedIn / usage.inputTokens;
  assert.ok(Math.abs(ratio - 1) <= 0.15, `estimate ${estimatedIn} vs real ${usage.inputTokens}`);

  // Everything is cached now: the dry run says so.
  const after = await runCli([...common, "--dry-run"]);
  assert.match(after.stderr, /calls +0 needed \(80 cached/);
});

Deno.test("long run: --sample is exact, reproducible and keeps order; --limit takes the first N", async () => {
  await using fake = await startFakeOpenAI();
  const root = await tempTree({ "data.jsonl": dataset(200) });
  const ids = async (extra: string[], out: string) => {
    const result = await runCli([
      join(root, "data.jsonl"),
      "-o",
      join(root, out),
      "--base-url",
      fake.url,
      "--model",
      "m",
      ...extra,
    ]);
    assert.equal(result.code, 0, result.stderr);
    const records = parseJsonl(await Deno.readTextFile(join(root, out, "data.jsonl"))) as Json[];
    return records.map((r) => Number(String(r.id).slice(1)));
  };
  const a = await ids(["--sample", "15", "--seed", "7"], "a");
  const b = await ids(["--sample", "15", "--seed", "7"], "b");
  const c = await ids(["--sample", "15", "--seed", "8"], "c");
  assert.equal(a.length, 15);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.deepEqual(a, [...a].sort((x, y) => x - y));
  assert.deepEqual(await ids(["--limit", "5"], "d"), [0, 1, 2, 3, 4]);
});

Deno.test("long run: --debug-log has one line per call and never the API key", async () => {
  await using fake = await startFakeOpenAI({ script: (n) => n === 1 ? "no_tags" : undefined });
  const root = await tempTree({ "data.jsonl": dataset(3) });
  const result = await runCli([
    ...convertArgs(join(root, "data.jsonl"), join(root, "out"), fake.url),
    "--concurrency",
    "1",
    "--debug-log",
    join(root, "debug.jsonl"),
  ], { env: { OPENAI_API_KEY: "sk-very-secret-key" } });
  assert.equal(result.code, 0, result.stderr);
  const text = await Deno.readTextFile(join(root, "debug.jsonl"));
  assert.ok(!text.includes("sk-very-secret-key"));
  const entries = parseJsonl(text) as Json[];
  assert.equal(entries.length, fake.stats.requests);
  assert.equal(entries.length, turnsIn(3) + 1);
  const first = entries[0];
  assert.equal(first.line, 1);
  assert.equal(first.turn, 2);
  assert.match(String(first.rejected), /no <thought_process> tags/);
  assert.ok(Array.isArray(first.messages));
  assert.ok(entries.slice(1).every((e) => typeof e.thought === "string" && e.usage !== null));
});

Deno.test("long run: the first interrupt finishes in-flight records, writes them and exits 130", async () => {
  // The window holds 256 records at this concurrency: the input must be well beyond it.
  await using fake = await startFakeOpenAI({ latencyMs: 20 });
  const root = await tempTree({ "data.jsonl": dataset(1000) });
  const child = spawnCli([
    ...convertArgs(join(root, "data.jsonl"), join(root, "out"), fake.url),
    "--concurrency",
    "4",
  ]);
  await waitFor(() => fake.stats.requests >= 10);
  child.kill("SIGINT");
  const { code, stderr } = await child.output();
  assert.equal(code, 130, new TextDecoder().decode(stderr));
  const out = parseJsonl(await Deno.readTextFile(join(root, "out/data.jsonl"))) as Json[];
  assert.ok(out.length > 0 && out.length < 1000, `wrote ${out.length}`);
  // What was written is a complete, in-order prefix of the input.
  assert.deepEqual(out.map((r) => r.id), out.map((_, i) => `r${i}`));
  assert.ok(fake.stats.aborted === 0, "in-flight calls were allowed to finish");
  const usage = JSON.parse(await Deno.readTextFile(join(root, "out/usage.json")));
  assert.equal(usage.interrupted, true);
  assert.equal(usage.written, out.length);
});

Deno.test("long run: after the first interrupt a failed call is not retried, so an outage does not hold the stop", async () => {
  // Every call is refused for now with a 429 asking to wait 1 s: without the interrupt each
  // record would wait and retry 7 times.
  await using fake = await startFakeOpenAI({ script: () => "rate_limit" });
  // One answer a record, but the first's two.
  const root = await tempTree({ "data.jsonl": dataset(200, 1e9) });
  const child = spawnCli([
    ...convertArgs(join(root, "data.jsonl"), join(root, "out"), fake.url),
    "--concurrency",
    "4",
  ]);
  // The first calls failed; their records wait to retry.
  await waitFor(() => fake.stats.requests >= 4);
  const started = Date.now();
  child.kill("SIGINT");
  const { code, stderr } = await child.output();
  assert.equal(code, 130, new TextDecoder().decode(stderr));
  assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms to stop`);
  const rejects = parseJsonl(
    await Deno.readTextFile(join(root, "out/data.rejects.jsonl")),
  ) as Json[];
  assert.ok(rejects.length >= 4);
  for (const reject of rejects) {
    assert.match(
      String(reject.reason),
      /^turn 2: upstream unavailable: .*\(not retried: the run is stopping\)$/,
    );
  }
  const usage = JSON.parse(await Deno.readTextFile(join(root, "out/usage.json")));
  assert.equal(usage.interrupted, true);
  assert.deepEqual([usage.written, usage.rejected], [0, rejects.length]);
  // The retries the stop cut off before they began are not counted.
  assert.equal(usage.retries, 0);
  // One call an answer: none retried after the interrupt.
  assert.equal(fake.stats.requests, rejects.length + 1);
});

Deno.test("long run: a second interrupt exits at once, keeping what the cache got", async () => {
  await using fake = await startFakeOpenAI({ latencyMs: 2_000 });
  const root = await tempTree({ "data.jsonl": dataset(50) });
  const child = spawnCli([
    ...convertArgs(join(root, "data.jsonl"), join(root, "out"), fake.url),
    "--concurrency",
    "4",
  ]);
  await waitFor(() => fake.stats.inFlight >= 4);
  child.kill("SIGINT");
  await new Promise((resolve) => setTimeout(resolve, 200));
  const started = Date.now();
  child.kill("SIGINT");
  const { code } = await child.output();
  assert.equal(code, 130);
  assert.ok(Date.now() - started < 1_500, "did not wait for the 2 s calls");
  await assert.rejects(() => Deno.stat(join(root, "out/data.jsonl")), Deno.errors.NotFound);
});
