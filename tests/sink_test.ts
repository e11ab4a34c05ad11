import assert from "node:assert/strict";
import { openAtomicFile, streamSink } from "../src/sink.ts";
import { WriteError } from "../src/write_error.ts";

// Lines of mixed widths (ASCII, 2-, 3- and 4-byte UTF-8) so buffer edges fall inside characters.
function lines(count: number): string[] {
  const samples = ["plain ascii", "café crème", "日本語のテキスト", "emoji 🙂🚀", "x".repeat(700)];
  return Array.from({ length: count }, (_, i) => `{"n":${i},"t":"${samples[i % 5]}"}\n`);
}

Deno.test("openAtomicFile() writes every text in order across many flushes, then renames", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/sub/out.jsonl`;
    const sink = await openAtomicFile(path);
    const texts = lines(5_000);
    // One text larger than any buffer, with multi-byte characters, in the middle.
    texts.splice(2_500, 0, `{"big":"${"é🙂".repeat(400_000)}"}\n`);
    // Half given with their line feed apart, as records are written.
    for (const [i, text] of texts.entries()) {
      if (i % 2 === 0) await sink.write(text);
      else await sink.write(text.slice(0, -1), "\n");
    }
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
    await sink.commit();
    assert.equal(await Deno.readTextFile(path), texts.join(""));
    await assert.rejects(Deno.stat(`${path}.partial`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openAtomicFile() discard() leaves no file behind", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sink = await openAtomicFile(`${dir}/out.jsonl`);
    await sink.write("a line\n");
    await sink.discard();
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openAtomicFile() replaces a stale .partial, never writing through one that links elsewhere", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/kept.jsonl`, "kept\n");
    await Deno.writeTextFile(`${dir}/also.jsonl`, "also kept\n");
    await Deno.symlink(`${dir}/kept.jsonl`, `${dir}/a.jsonl.partial`);
    await Deno.link(`${dir}/also.jsonl`, `${dir}/b.jsonl.partial`);
    for (const name of ["a.jsonl", "b.jsonl"]) {
      const sink = await openAtomicFile(`${dir}/${name}`);
      await sink.write("new\n");
      await sink.commit();
      assert.equal(await Deno.readTextFile(`${dir}/${name}`), "new\n");
    }
    assert.equal(await Deno.readTextFile(`${dir}/kept.jsonl`), "kept\n");
    assert.equal(await Deno.readTextFile(`${dir}/also.jsonl`), "also kept\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openAtomicFile() refuses a path that is a directory before anything is written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/taken`);
    await assert.rejects(
      openAtomicFile(`${dir}/taken`),
      /Cannot write ".*taken": it is a directory/,
    );
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name), [
      "taken",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("streamSink() hands each text on at once, in chunks the stream may keep", async () => {
  const received: Uint8Array[] = [];
  const sink = streamSink(
    new WritableStream<Uint8Array>({
      // Kept without copying, as a TransformStream would pass them on: none may be reused.
      write: (chunk) => void received.push(chunk),
    }),
    "the stream",
  );
  const texts = lines(300);
  for (const [i, text] of texts.entries()) {
    if (i % 2 === 0) await sink.write(text);
    else await sink.write(text.slice(0, -1), "\n");
    assert.equal(received.length, i + 1, "each write reaches the stream before the next");
  }
  await sink.commit();
  const decoder = new TextDecoder();
  assert.deepEqual(received.map((chunk) => decoder.decode(chunk)), texts);
});

Deno.test("openAtomicFile() commit that cannot put the file in place names it and leaves no .partial", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sink = await openAtomicFile(`${dir}/out.jsonl`);
    await sink.write("a line\n");
    // Taken by a folder with something in it while the file was being written.
    await Deno.mkdir(`${dir}/out.jsonl/kept`, { recursive: true });
    await assert.rejects(
      sink.commit(),
      (error) =>
        error instanceof WriteError &&
        error.message.startsWith(`Cannot write "${dir}/out.jsonl": `),
    );
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name), [
      "out.jsonl",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "streamSink() write to a pipe whose reader has exited says so, naming the stream",
  { ignore: Deno.build.os === "windows" }, // no `true` command
  async () => {
    const reader = new Deno.Command("true", { stdin: "piped" }).spawn();
    await reader.status;
    const sink = streamSink(reader.stdin, "stdout");
    await assert.rejects(
      sink.write("a line", "\n"),
      (error) =>
        error instanceof WriteError && error.readerGone &&
        /^Cannot write stdout: Broken pipe/.test(error.message),
    );
    await sink.discard();
  },
);
