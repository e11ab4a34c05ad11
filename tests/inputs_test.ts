import assert from "node:assert/strict";
import { join } from "node:path";
import { InputError, InputReadError, planInputs, type RunFiles } from "../src/inputs.ts";

async function tree(files: Record<string, string>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "cotfit-inputs-" });
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(join(root, path, ".."), { recursive: true });
    await Deno.writeTextFile(join(root, path), text);
  }
  return root;
}

/** Plans `root/in` into `root/out`, with the files the walk left out and why. */
async function planFolder(root: string) {
  const skipped: [string, string][] = [];
  const plans = await planInputs(
    [join(root, "in")],
    join(root, "out"),
    {},
    (path, why) => skipped.push([path, why]),
  );
  return { plans, skipped };
}

Deno.test("planInputs() maps a directory recursively to the same relative names", async () => {
  const root = await tree({
    "in/a.jsonl": "",
    "in/sub/b.json": "",
    "in/notes.txt": "",
    "in/old.rejects.jsonl": "",
  });
  const { plans, skipped } = await planFolder(root);
  assert.deepEqual(plans.map((p) => [p.output, p.rejects, p.format]), [
    [join(root, "out/a.jsonl"), join(root, "out/a.rejects.jsonl"), "jsonl"],
    [join(root, "out/sub/b.json"), join(root, "out/sub/b.rejects.jsonl"), "auto"],
  ]);
  // Left out, but said: a file named as cotfit names its rejects may be meant as data.
  assert.deepEqual(skipped, [[join(root, "in/old.rejects.jsonl"), "cotfit-output"]]);
});

Deno.test("planInputs() reads .ndjson files and leaves Hugging Face dataset metadata out, saying so", async () => {
  const root = await tree({
    "in/train.ndjson": "",
    "in/dataset_info.json": "{}",
    "in/train/state.json": "{}",
    "in/train/dataset_dict.json": "{}",
    "in/train/part.json": "",
  });
  const { plans, skipped } = await planFolder(root);
  assert.deepEqual(plans.map((p) => [p.output, p.rejects, p.format]), [
    [join(root, "out/train.ndjson"), join(root, "out/train.rejects.jsonl"), "jsonl"],
    [join(root, "out/train/part.json"), join(root, "out/train/part.rejects.jsonl"), "auto"],
  ]);
  assert.deepEqual(skipped.toSorted(), [
    [join(root, "in/dataset_info.json"), "metadata"],
    [join(root, "in/train/dataset_dict.json"), "metadata"],
    [join(root, "in/train/state.json"), "metadata"],
  ]);
  // Named, it is read.
  const named = await planInputs([join(root, "in/dataset_info.json")], join(root, "out"));
  assert.equal(named.length, 1);
});

Deno.test("planInputs() takes gzip inputs and names their outputs without .gz", async () => {
  const root = await tree({
    "in/a.jsonl.gz": "",
    "in/b.JSON.GZ": "",
    "in/c.txt.gz": "",
    "in/d.jsonl": "",
    "in/d.jsonl.gz": "",
  });
  await assert.rejects(
    () => planInputs([join(root, "in")], join(root, "out")),
    (error: InputError) =>
      error instanceof InputError && /d\.jsonl\.gz" would both write/.test(error.message),
  );
  await Deno.remove(join(root, "in/d.jsonl.gz"));
  const plans = await planInputs([join(root, "in")], join(root, "out"));
  assert.deepEqual(plans.map((p) => [p.input, p.output, p.rejects, p.format]), [
    [
      join(root, "in/a.jsonl.gz"),
      join(root, "out/a.jsonl"),
      join(root, "out/a.rejects.jsonl"),
      "jsonl",
    ],
    [
      join(root, "in/b.JSON.GZ"),
      join(root, "out/b.JSON"),
      join(root, "out/b.rejects.jsonl"),
      "auto",
    ],
    [
      join(root, "in/d.jsonl"),
      join(root, "out/d.jsonl"),
      join(root, "out/d.rejects.jsonl"),
      "jsonl",
    ],
  ]);
});

Deno.test("planInputs() follows links: a Hugging Face snapshot's files are found by their names", async () => {
  const root = await tree({ "blobs/9f86d0": "", "blobs/60303a": "", "other/c.jsonl": "" });
  await Deno.mkdir(join(root, "snapshots/rev/sub"), { recursive: true });
  await Deno.symlink("../../blobs/9f86d0", join(root, "snapshots/rev/train.jsonl"));
  await Deno.symlink("../../../blobs/60303a", join(root, "snapshots/rev/sub/test.jsonl"));
  await Deno.symlink(join(root, "other"), join(root, "snapshots/rev/linked"));
  await Deno.symlink(join(root, "snapshots"), join(root, "snapshots/rev/up")); // a loop
  const plans = await planInputs([join(root, "snapshots/rev")], join(root, "out"));
  assert.deepEqual(plans.map((p) => [p.input, p.output, p.regular]), [
    [join(root, "snapshots/rev/linked/c.jsonl"), join(root, "out/linked/c.jsonl"), true],
    [join(root, "snapshots/rev/sub/test.jsonl"), join(root, "out/sub/test.jsonl"), true],
    [join(root, "snapshots/rev/train.jsonl"), join(root, "out/train.jsonl"), true],
  ]);

  await Deno.symlink(join(root, "nowhere"), join(root, "snapshots/rev/gone.jsonl"));
  await assert.rejects(
    () => planInputs([join(root, "snapshots/rev")], join(root, "out")),
    (error: InputError) =>
      error instanceof InputError && /gone\.jsonl": it links to nothing$/.test(error.message),
  );
});

Deno.test("planInputs() maps a file to its base name and - to stdout", async () => {
  const root = await tree({ "deep/x.jsonl": "" });
  const plans = await planInputs([join(root, "deep/x.jsonl"), "-"], join(root, "out"));
  assert.equal(plans[0].output, join(root, "out/x.jsonl"));
  assert.deepEqual([plans[1].input, plans[1].output, plans[1].rejects], ["-", null, null]);
  const withRejects = await planInputs(["-"], null, { rejects: join(root, "r.jsonl") });
  assert.equal(withRejects[0].rejects, join(root, "r.jsonl"));
});

Deno.test("planInputs() skips the output directory when it sits inside the input", async () => {
  const root = await tree({ "a.jsonl": "", "out/a.jsonl": "" });
  const plans = await planInputs([root], join(root, "out"));
  assert.deepEqual(plans.map((p) => p.input), [join(root, "a.jsonl")]);
});

Deno.test("planInputs() refuses colliding outputs, a missing -o, and missing inputs", async () => {
  const root = await tree({ "a/x.jsonl": "", "b/x.jsonl": "" });
  await assert.rejects(
    () => planInputs([join(root, "a/x.jsonl"), join(root, "b/x.jsonl")], join(root, "out")),
    (error: InputError) => error instanceof InputError && /both write/.test(error.message),
  );
  await assert.rejects(() => planInputs([join(root, "a/x.jsonl")], null), InputError);
  await assert.rejects(() => planInputs([join(root, "nope.jsonl")], root), /Cannot read input/);
  await assert.rejects(() => planInputs([join(root, "a/x.jsonl")], join(root, "a")), /overwrite/);
  await assert.rejects(() => planInputs([], root), /no input/);
});

Deno.test("planInputs() refuses a directory with no record file, or that is the output", async () => {
  const root = await tree({ "docs/notes.txt": "", "done/a.rejects.jsonl": "", "in/a.jsonl": "" });
  await assert.rejects(
    () => planInputs([join(root, "docs")], join(root, "out")),
    (error: InputError) =>
      error instanceof InputError &&
      error.message.startsWith("no .jsonl, .ndjson or .json file in"),
  );
  await assert.rejects(() => planInputs([join(root, "done")], join(root, "out")), /no \.jsonl/);
  // A Hugging Face download is often Parquet: say so rather than only "nothing here".
  const hf = await tree({ "data/train-00000-of-00002.parquet": "", "data/test.parquet": "" });
  await assert.rejects(
    () => planInputs([hf], join(hf, "out")),
    (error: InputError) =>
      error instanceof InputError &&
      /^no \.jsonl, \.ndjson or \.json file in .*; its 2 \.parquet files are not read: convert them to JSONL/
        .test(error.message),
  );
  await assert.rejects(
    () => planInputs([join(hf, "data/test.parquet")], join(hf, "out")),
    /^InputError: Cannot read input ".*test\.parquet": cotfit does not read Parquet; convert it/,
  );
  await assert.rejects(
    () => planInputs([join(root, "in")], join(root, "in")),
    (error: InputError) =>
      error instanceof InputError && /is the input directory/.test(error.message),
  );
  await assert.rejects(() => planInputs([join(root, "in")], join(root, "in/")), /input directory/);
});

Deno.test("planInputs() refuses an output directory that is a file", async () => {
  const root = await tree({ "in/a.jsonl": "", "taken": "" });
  await assert.rejects(
    () => planInputs([join(root, "in/a.jsonl")], join(root, "taken")),
    (error: InputError) => error instanceof InputError && /is a file/.test(error.message),
  );
});

// Root reads a file whatever its mode, but not /proc/self/mem: its first byte is unmapped memory
// (EIO), and Deno wants --allow-all to open it at all.
Deno.test("planInputs() refuses an input file it cannot read, given or found in a directory", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  const root = await tree({ "in/a.jsonl": "", "in/c.jsonl": "" });
  const unreadable = join(root, "in/b.jsonl");
  await Deno.symlink("/proc/self/mem", unreadable);
  for (const input of [join(root, "in"), unreadable]) {
    await assert.rejects(
      () => planInputs([input], join(root, "out")),
      (error: InputReadError) =>
        error instanceof InputReadError && error instanceof InputError &&
        error.path === unreadable && error.reason !== "" &&
        error.message === `Cannot read input "${unreadable}": ${error.reason}`,
    );
  }
});

Deno.test("planInputs() refuses an output that is its input through a link or a hard link", async () => {
  const root = await tree({ "same/x.jsonl": "x\n", "same/h.jsonl": "h\n", "in/y.jsonl": "y\n" });
  await Deno.mkdir(join(root, "other"));
  await Deno.symlink(join(root, "same/x.jsonl"), join(root, "other/x.jsonl"));
  await Deno.link(join(root, "same/h.jsonl"), join(root, "other/h.jsonl"));
  await Deno.symlink(join(root, "in"), join(root, "in-link"));
  for (
    const [input, output, written] of [
      ["other/x.jsonl", "same", "same/x.jsonl"],
      ["other/h.jsonl", "same", "same/h.jsonl"],
      // The output directory itself reached through a link.
      ["in/y.jsonl", "in-link", "in-link/y.jsonl"],
    ]
  ) {
    await assert.rejects(
      () => planInputs([join(root, input)], join(root, output)),
      (error: InputError) =>
        error instanceof InputError &&
        error.message ===
          `output "${join(root, written)}" would overwrite its input "${join(root, input)}", ` +
            "the same file through a link: choose another -o",
    );
  }
  await assert.rejects(
    () => planInputs([join(root, "in")], join(root, "in-link")),
    /"[^"]*in-link" is the input directory/,
  );
  assert.equal(await Deno.readTextFile(join(root, "same/x.jsonl")), "x\n");
});

Deno.test("planInputs() refuses a rejects, temporary or usage file that is an input, and two inputs writing one file", async () => {
  const root = await tree({
    "p/a.jsonl": "",
    "p/b.jsonl": "",
    "out/a.rejects.jsonl": "",
    "out/b.jsonl.partial": "",
    "q/a.json": "",
    "data/usage.json": "",
    "tree/a.jsonl": "",
    "tree/sub/a.jsonl": "",
  });
  const out = join(root, "out");
  const refuses = (inputs: string[], message: string) =>
    assert.rejects(
      () => planInputs(inputs.map((input) => join(root, input)), out),
      (error: InputError) => error instanceof InputError && error.message === message,
    );
  await refuses(
    ["p/a.jsonl", "out/a.rejects.jsonl"],
    `rejects file would overwrite input "${join(out, "a.rejects.jsonl")}": choose another -o`,
  );
  await Deno.mkdir(join(root, "r"));
  await Deno.symlink(join(out, "a.rejects.jsonl"), join(root, "r/r.jsonl"));
  await refuses(
    ["p/a.jsonl", "r/r.jsonl"],
    `rejects file "${join(out, "a.rejects.jsonl")}" would overwrite input ` +
      `"${join(root, "r/r.jsonl")}", the same file through a link: choose another -o`,
  );
  await refuses(
    ["p/b.jsonl", "out/b.jsonl.partial"],
    `temporary output would overwrite input "${join(out, "b.jsonl.partial")}": choose another -o`,
  );
  await refuses(
    ["p/a.jsonl", "q/a.json"],
    `inputs "${join(root, "p/a.jsonl")}" and "${join(root, "q/a.json")}" would both write ` +
      `"${join(out, "a.rejects.jsonl")}": process them separately`,
  );
  await refuses(
    ["data/usage.json"],
    `input "${join(root, "data/usage.json")}" would write "${join(out, "usage.json")}", where ` +
      "the run writes its usage: rename it or choose another -o",
  );
  // out/sub links to out: tree/a.jsonl and tree/sub/a.jsonl would be written to one file.
  await Deno.symlink(out, join(out, "sub"));
  await refuses(
    ["tree"],
    `inputs "${join(root, "tree/a.jsonl")}" and "${join(root, "tree/sub/a.jsonl")}" would both ` +
      `write "${join(out, "sub/a.jsonl")}": process them separately`,
  );
});

Deno.test("planInputs() refuses a --rejects, --debug-log or cache that is an input or another file the run writes", async () => {
  const root = await tree({ "p/a.jsonl": "", "cache.sqlite": "" });
  await Deno.link(join(root, "p/a.jsonl"), join(root, "hard.jsonl"));
  const input = join(root, "p/a.jsonl");
  const out = join(root, "out");
  const refuses = (inputs: string[], files: RunFiles, message: string) =>
    assert.rejects(
      () => planInputs(inputs, out, files),
      (error: InputError) => error instanceof InputError && error.message === message,
    );
  await refuses(
    ["-", input],
    { rejects: input },
    `rejects file would overwrite input "${input}": choose another --rejects`,
  );
  await refuses(
    [input, "-"],
    { rejects: join(out, "a.jsonl") },
    `rejects file "${join(out, "a.jsonl")}" is also the output of input "${input}": ` +
      "choose another --rejects",
  );
  await refuses(
    ["-"],
    { rejects: join(out, "usage.json") },
    `rejects file "${join(out, "usage.json")}" is also the run's usage file: ` +
      "choose another --rejects",
  );
  // The debug log is written whether or not an input is stdin.
  await refuses(
    [input],
    { debugLog: input },
    `debug log would overwrite input "${input}": choose another --debug-log`,
  );
  await refuses(
    [input],
    { debugLog: join(root, "hard.jsonl") },
    `debug log "${join(root, "hard.jsonl")}" would overwrite input "${input}", the same file ` +
      "through a link: choose another --debug-log",
  );
  await refuses(
    [input],
    { debugLog: join(out, "a.jsonl") },
    `debug log "${join(out, "a.jsonl")}" is also the output of input "${input}": ` +
      "choose another --debug-log",
  );
  await refuses(
    [input],
    { debugLog: join(out, "a.jsonl.partial") },
    `debug log "${join(out, "a.jsonl.partial")}" is also the temporary output of input ` +
      `"${input}": choose another --debug-log`,
  );
  await refuses(
    ["-"],
    { rejects: join(root, "r.jsonl"), debugLog: join(root, "r.jsonl") },
    `debug log "${join(root, "r.jsonl")}" is also the rejects file of stdin: ` +
      "choose another --debug-log",
  );
  await refuses(
    [input],
    { cache: join(root, "cache.sqlite"), debugLog: join(root, "cache.sqlite") },
    `debug log "${join(root, "cache.sqlite")}" is also the run's cache: choose another --debug-log`,
  );
  await refuses(
    [input],
    { cache: input },
    `cache would overwrite input "${input}": choose another --cache`,
  );
  // Nothing else is in the way.
  const plans = await planInputs(["-", input], out, {
    rejects: join(root, "r.jsonl"),
    debugLog: join(root, "debug.jsonl"),
    cache: join(root, "cache.sqlite"),
  });
  assert.equal(plans.length, 2);
});

Deno.test("planInputs() refuses a file to be written where a directory is", async () => {
  const root = await tree({
    "p/a.jsonl": "",
    "d/x": "",
    "o1/a.jsonl/x": "",
    "o2/usage.json/x": "",
  });
  const input = join(root, "p/a.jsonl");
  const dir = join(root, "d");
  const refuses = (inputs: string[], out: string | null, files: RunFiles, message: string) =>
    assert.rejects(
      () => planInputs(inputs, out && join(root, out), files),
      (error: InputError) => error instanceof InputError && error.message === message,
    );
  const isDir = (what: string, path: string, flag: string) =>
    `${what} "${path}" is a directory: choose another ${flag}`;
  await refuses([input], "o", { debugLog: dir }, isDir("debug log", dir, "--debug-log"));
  await refuses(["-"], null, { rejects: dir }, isDir("rejects file", dir, "--rejects"));
  await refuses([input], "o", { cache: dir }, isDir("cache", dir, "--cache"));
  await refuses([input], "o1", {}, isDir("output", join(root, "o1/a.jsonl"), "-o"));
  await refuses([input], "o2", {}, isDir("usage file", join(root, "o2/usage.json"), "-o"));
});
