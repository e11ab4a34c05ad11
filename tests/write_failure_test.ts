/**
 * A run whose files or stdout cannot be written: a full disk, a pipe whose reader has gone. The
 * disk is made full for the run alone by a file size limit (`ulimit -f`), which needs no root:
 * past it, the kernel fails a write (EFBIG) as a full disk does (ENOSPC).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type Options, resolveOptions } from "../src/config.ts";
import { openCache } from "../src/cache.ts";
import { lineStream } from "../src/lines.ts";
import { runConversion } from "../src/run.ts";
import type { Line } from "../src/types.ts";
import {
  cliArgv,
  cliCommand,
  type CliResult,
  convertArgs,
  parseJsonl,
  tempTree,
} from "./cli_helpers.ts";
import { startFakeOpenAI } from "./fake_openai.ts";

const onWindows = Deno.build.os === "windows";

function records(count: number, tag = "r"): string {
  return Array.from({ length: count }, (_, i) =>
    JSON.stringify({
      id: `${tag}-${i}`,
      conversations: [
        { from: "human", value: `Question ${tag} ${i}?` },
        { from: "gpt", value: `Answer ${tag} ${i}.` },
      ],
    }) + "\n").join("");
}

/**
 * A file size limit for the shell's commands. SIGXFSZ is ignored, as the default would kill the
 * process: a write past the limit then fails with EFBIG. `ulimit -f` counts 512-byte blocks in
 * sh (POSIX).
 */
function fileSizeLimit(bytes: number): string {
  return `trap '' XFSZ; ulimit -f ${bytes / 512}`;
}

/** Runs the CLI from `sh` after `setup`, as a user's shell would; `env` is seen by both. */
async function runInShell(
  setup: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  const { code, stdout, stderr } = await new Deno.Command("sh", {
    args: ["-c", `${setup}\nexec "$@"`, "sh", ...cliArgv(args)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** What a run left in a folder: none when it is gone (a run removes one it made and left empty). */
async function names(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name).sort();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

async function remainingText(lines: ReadableStreamDefaultReader<Line>): Promise<string> {
  const texts: string[] = [];
  for (let next = await lines.read(); !next.done; next = await lines.read()) {
    if ("text" in next.value) texts.push(next.value.text);
  }
  return texts.join("\n");
}

function assertNoCrash(stderr: string): void {
  assert.doesNotMatch(stderr, /Uncaught|\n\s+at /, "no stack trace");
}

Deno.test(
  "cli: stdout on a full device stops the run with exit 2, one error line naming stdout, and the summary",
  { ignore: Deno.build.os !== "linux" }, // /dev/full
  async () => {
    await using fake = await startFakeOpenAI();
    const root = await tempTree({ "in.jsonl": records(5) });
    const result = await runInShell(
      'exec < "$IN" > /dev/full',
      ["-", "--base-url", fake.url, "--model", "m"],
      { IN: join(root, "in.jsonl") },
    );
    assert.equal(result.code, 2, result.stderr);
    assertNoCrash(result.stderr);
    assert.match(result.stderr, /^calls +\d+ /m, "the summary says what was spent");
    assert.match(
      result.stderr,
      /\nerror: Cannot write stdout: No space left on device \(os error 28\)\n$/,
    );
    assert.equal(result.stderr.match(/error:/g)?.length, 1);
  },
);

Deno.test(
  "cli: stdout closed by its reader (| head -1) stops the run at once: exit 141, no error, no call after",
  { ignore: onWindows }, // `< FILE` goes through sh
  async () => {
    await using fake = await startFakeOpenAI({ latencyMs: 200 });
    const root = await tempTree({ "in.jsonl": records(200) });
    const child = cliCommand(
      ["-", "--base-url", fake.url, "--model", "m", "--concurrency", "2"],
      { stdinFile: join(root, "in.jsonl") },
    ).spawn();
    const stderr = new Response(child.stderr).text();
    // What `head -1` does: read one line, then exit.
    const lines = child.stdout.pipeThrough(lineStream()).getReader();
    const first = (await lines.read()).value as Line;
    assert.ok("text" in first && JSON.parse(first.text).id === "r-0");
    const callsMade = fake.stats.requests;
    const closed = performance.now();
    await lines.cancel();
    const { code } = await child.status;
    const text = await stderr;
    assert.equal(code, 141, text);
    assert.ok(performance.now() - closed < 5_000, "stopped at once, not after 200 records");
    assertNoCrash(text);
    assert.doesNotMatch(text, /error:/);
    assert.match(
      text,
      /\nstopped: stdout was closed by the command reading it; no further records are generated\n$/,
    );
    // The closed pipe shows at the next record's write: the calls done meanwhile gave their slots
    // to as many others, which the stop cut off.
    assert.ok(
      fake.stats.requests <= callsMade + 2 * 2,
      `${callsMade}, then ${fake.stats.requests}`,
    );
  },
);

Deno.test(
  "runConversion(): once stdout's reader is gone, the calls in flight are aborted and none starts",
  { ignore: onWindows }, // no `true` command
  async () => {
    await using fake = await startFakeOpenAI({ latencyMs: 300 });
    // A reader that has exited: every write to its pipe fails.
    const reader = new Deno.Command("true", { stdin: "piped" }).spawn();
    await reader.status;
    const options: Options = resolveOptions({
      flags: { model: "m", "base-url": fake.url, concurrency: "2" },
      positionals: ["-"],
      env: {},
    });
    let stderr = "";
    const code = await runConversion(options, {
      stdin: ReadableStream.from([new TextEncoder().encode(records(50))]),
      stdout: reader.stdin,
      stderr: (text) => void (stderr += text),
      stderrIsTTY: false,
      stop: new AbortController().signal,
      now: () => performance.now(),
    });
    assert.equal(code, 141, stderr);
    // Longer than a call: one started after the stop, or left running, would show by now.
    await new Promise((resolve) => setTimeout(resolve, 700));
    assert.equal(fake.stats.inFlight, 0);
    // Every call the endpoint saw was done before the stop, or cut off by it.
    const done = Number(/^calls +(\d+) /m.exec(stderr)?.[1]);
    assert.equal(fake.stats.requests, done + fake.stats.aborted, stderr);
    // The summary says how many were cut off: a provider may bill those too.
    const aborted = Number(
      /; (\d+) aborted in flight \(a provider may bill them\)$/m.exec(stderr)?.[1] ?? 0,
    );
    assert.equal(aborted, fake.stats.aborted, stderr);
    assert.ok(fake.stats.requests < 10, `${fake.stats.requests} calls`);
  },
);

Deno.test(
  "cli: an output the disk cannot take stops the run with exit 2 naming it; the file before it stays",
  { ignore: onWindows }, // ulimit
  async () => {
    await using fake = await startFakeOpenAI();
    // b.jsonl's output is past the 32 KiB limit; a.jsonl's and the usage file are well under.
    const root = await tempTree({ "d/a.jsonl": records(1, "a"), "d/b.jsonl": records(200, "b") });
    const out = join(root, "out");
    const result = await runInShell(fileSizeLimit(32 * 1024), [
      ...convertArgs(join(root, "d"), out, fake.url),
      "--no-cache",
    ]);
    assert.equal(result.code, 2, result.stderr);
    assertNoCrash(result.stderr);
    assert.match(result.stderr, /^calls +201 /m);
    const failure = `Cannot write "${join(out, "b.jsonl")}": File too large (os error 27)`;
    assert.ok(result.stderr.endsWith(`\nerror: ${failure}\n`), result.stderr);
    assert.deepEqual(await names(out), ["a.jsonl", "usage.json"]);
    assert.deepEqual(
      parseJsonl(await Deno.readTextFile(join(out, "a.jsonl"))).map((r) =>
        (r as { id: string }).id
      ),
      ["a-0"],
    );
    const usage = JSON.parse(await Deno.readTextFile(join(out, "usage.json")));
    assert.equal(usage.calls, 201);
    assert.equal(usage.error, failure);
    // The counts say what the disk holds: b.jsonl's records, the one whose write failed
    // included, went with it.
    assert.deepEqual([usage.written, usage.rejected, usage.discarded], [1, 0, 200]);
  },
);

Deno.test(
  "cli: a write that fails midway leaves counts that add up: the records of the dropped file are discarded",
  { ignore: onWindows }, // ulimit
  async () => {
    await using fake = await startFakeOpenAI();
    // About 600 KB of output: its first 256 KiB write, past the 32 KiB limit, fails mid-file.
    const root = await tempTree({ "in.jsonl": records(4_000, "x") });
    const out = join(root, "out");
    const result = await runInShell(fileSizeLimit(32 * 1024), [
      ...convertArgs(join(root, "in.jsonl"), out, fake.url),
      "--no-cache",
    ]);
    assert.equal(result.code, 2, result.stderr);
    assertNoCrash(result.stderr);
    assert.deepEqual(await names(out), ["usage.json"]);
    const usage = JSON.parse(await Deno.readTextFile(join(out, "usage.json")));
    assert.ok(usage.conversations > 0 && usage.conversations < 4_000, `${usage.conversations}`);
    assert.deepEqual([usage.written, usage.rejected, usage.discarded], [0, 0, usage.conversations]);
  },
);

Deno.test(
  "cli: a rejects file the disk cannot take drops its output too, and the counts say so",
  { ignore: onWindows }, // ulimit
  async () => {
    await using fake = await startFakeOpenAI();
    // The output (10 short records) fits under 8 KiB; the reject of a 30 KB line (its raw text
    // cut to 10,000 characters) does not.
    const junk = JSON.stringify({ junk: "x".repeat(30_000) }) + "\n";
    const root = await tempTree({ "in.jsonl": records(10) + junk });
    const out = join(root, "out");
    const result = await runInShell(fileSizeLimit(8 * 1024), [
      ...convertArgs(join(root, "in.jsonl"), out, fake.url),
      "--no-cache",
    ]);
    assert.equal(result.code, 2, result.stderr);
    assertNoCrash(result.stderr);
    assert.match(result.stderr, /error: Cannot write ".*in\.rejects\.jsonl": File too large/);
    // No output without its rejects, and no note calling this run's file an earlier run's.
    assert.deepEqual(await names(out), ["usage.json"]);
    assert.doesNotMatch(result.stderr, /earlier run/);
    const usage = JSON.parse(await Deno.readTextFile(join(out, "usage.json")));
    assert.deepEqual([usage.written, usage.rejected, usage.discarded], [0, 0, 11]);
  },
);

Deno.test(
  "cli: when the usage file cannot be written either, one line says so and none is left half-written",
  { ignore: onWindows }, // ulimit
  async () => {
    await using fake = await startFakeOpenAI();
    const answer = "A long answer. ".repeat(40);
    const root = await tempTree({
      "in.jsonl": JSON.stringify({
        conversations: [{ from: "human", value: "Q?" }, { from: "gpt", value: answer }],
      }) + "\n",
    });
    // A 512-byte limit: the output is longer, and so is the usage file, whose error names
    // this long folder.
    const out = join(root, "o".repeat(150));
    const result = await runInShell(fileSizeLimit(512), [
      ...convertArgs(join(root, "in.jsonl"), out, fake.url),
      "--no-cache",
    ]);
    assert.equal(result.code, 2, result.stderr);
    assertNoCrash(result.stderr);
    const errors = result.stderr.split("\n").filter((line) => line.startsWith("error:"));
    assert.equal(errors.length, 2, result.stderr);
    assert.match(errors[0], /^error: Cannot write ".*\/usage\.json": File too large/);
    assert.match(errors[1], /^error: Cannot write ".*\/in\.jsonl": File too large/);
    assert.deepEqual(await names(out), []);
  },
);

Deno.test(
  "cli: a cache the disk cannot take stops the run with exit 2 naming it; the thoughts it kept are not paid again",
  { ignore: onWindows }, // ulimit
  async () => {
    await using fake = await startFakeOpenAI({ latencyMs: 20 });
    const root = await tempTree({ "many.jsonl": records(20), "one.jsonl": records(1, "one") });
    const limit = fileSizeLimit(8 * 1024);
    const run = (input: string, cache: string, setup = limit) =>
      runInShell(setup, [
        ...convertArgs(join(root, input), join(root, `out-${input}`), fake.url),
        "--cache",
        join(root, cache),
        "--concurrency",
        "1",
      ]);
    // Held open here, a cache's write-ahead log stays past the limit: the run can open and read
    // it, but every commit it makes fails.
    const holders = [
      openCache(join(root, "a/cache.sqlite")),
      openCache(join(root, "b/cache.sqlite")),
    ];
    let many: CliResult;
    let one: CliResult;
    try {
      // Many records: the commit fails after the first puts, and the next put stops the run.
      many = await run("many.jsonl", "a/cache.sqlite");
      // One record: its commit, at the run's end, is the one that fails.
      one = await run("one.jsonl", "b/cache.sqlite");
    } finally {
      for (const holder of holders) holder.close();
    }
    for (const [result, cache] of [[many, "a/cache.sqlite"], [one, "b/cache.sqlite"]] as const) {
      assert.equal(result.code, 2, result.stderr);
      assertNoCrash(result.stderr);
      const named = RegExp.escape(`Cannot write cache "${join(root, cache)}": `);
      assert.match(result.stderr, new RegExp(`\nerror: ${named}.+\n$`));
    }
    // The stopped file is not written; the one whose record was done before the close is.
    assert.deepEqual(await names(join(root, "out-many.jsonl")), ["usage.json"]);
    assert.deepEqual(await names(join(root, "out-one.jsonl")), ["one.jsonl", "usage.json"]);
    const usage = JSON.parse(await Deno.readTextFile(join(root, "out-many.jsonl/usage.json")));
    assert.match(usage.error, /^Cannot write cache /);
    assert.ok(usage.calls < 20, `${usage.calls} calls`);

    // With room again, the same commands finish, and pay only for the thoughts not kept.
    const reruns = [
      { input: "many.jsonl", cache: "a/cache.sqlite", turns: 20 },
      { input: "one.jsonl", cache: "b/cache.sqlite", turns: 1 },
    ];
    for (const { input, cache, turns } of reruns) {
      const again = await run(input, cache, "true");
      assert.equal(again.code, 0, again.stderr);
      const rerun = JSON.parse(await Deno.readTextFile(join(root, `out-${input}/usage.json`)));
      assert.equal(rerun.calls + rerun.cacheHits, turns);
      assert.ok(rerun.cacheHits >= 1, `${rerun.cacheHits} cache hits`);
    }
  },
);

Deno.test(
  "main.ts serve: a cache the disk cannot take fails the request with its error line, and the server lives on",
  { ignore: onWindows }, // ulimit
  async () => {
    await using fake = await startFakeOpenAI({ latencyMs: 100 });
    const root = await Deno.makeTempDir({ prefix: "cotfit-e2e-" });
    const cache = join(root, "cache.sqlite");
    const holder = openCache(cache);
    const child = new Deno.Command("sh", {
      args: [
        "-c",
        `${fileSizeLimit(8 * 1024)}\nexec "$@"`,
        "sh",
        ...cliArgv([
          "serve",
          "--port",
          "0",
          "--model",
          "m",
          "--base-url",
          fake.url,
          "--cache",
          cache,
          "--request-concurrency",
          "1",
        ]),
      ],
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    let exited = false;
    try {
      const stderr = child.stderr.pipeThrough(lineStream()).getReader();
      const first = (await stderr.read()).value as Line;
      const url = "text" in first
        ? /^cotfit serve listening on (http:\/\/\S+)$/.exec(first.text)?.[1]
        : undefined;
      assert.ok(url, JSON.stringify(first));
      const response = await fetch(`${url}/v1/rephrase`, { method: "POST", body: records(5) });
      const lines = (await response.text()).trim().split("\n").map((line) => JSON.parse(line));
      // The first thought is taken before the commit 50 ms later fails; the next put is refused.
      assert.ok(lines.length < 5, JSON.stringify(lines));
      const message = `Cannot write cache ${JSON.stringify(cache)}: disk I/O error`;
      assert.deepEqual(lines.at(-1), { error: { message, fatal: true } });
      const health = await fetch(`${url}/healthz`);
      assert.equal((await health.json()).status, "ok");
      child.kill("SIGTERM");
      const status = await child.status;
      exited = true;
      assert.equal(status.code, 2);
      const text = await remainingText(stderr);
      assertNoCrash(text);
      // Said when the request failed, then again when the server stops.
      assert.equal(text.split(`error: ${message}`).length - 1, 2, text);
      assert.match(text, /cotfit serve stopped$/);
    } finally {
      if (!exited) {
        child.kill("SIGKILL");
        await child.status;
      }
      holder.close();
      await Deno.remove(root, { recursive: true });
    }
  },
);
