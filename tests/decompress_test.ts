import assert from "node:assert/strict";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { type ContentCoding, decompressStream } from "../src/decompress.ts";

const encoder = new TextEncoder();

/** Lines of distinct JSON records, `count` of them. */
function jsonl(count: number): string {
  let text = "";
  for (let i = 0; i < count; i++) {
    text += JSON.stringify({ id: i, text: `record ${i} ${i * i}` }) + "\n";
  }
  return text;
}

/** Feeds `bytes` in pieces of `size` (split anywhere, magic bytes included) and reads it all. */
async function decode(
  bytes: Uint8Array,
  options: { coding?: ContentCoding | "sniff"; size?: number } = {},
): Promise<{ text: string; faults: string[] }> {
  const size = options.size ?? bytes.length;
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += size) pieces.push(bytes.slice(at, at + size));
  const faults: string[] = [];
  const stream = ReadableStream.from(pieces)
    .pipeThrough(decompressStream({ coding: options.coding, onFault: (r) => faults.push(r) }));
  // ignoreBOM: a BOM is the input's own byte, kept for the line reader to drop.
  const decoded = new Uint8Array(await new Response(stream).arrayBuffer());
  return { text: new TextDecoder("utf-8", { ignoreBOM: true }).decode(decoded), faults };
}

Deno.test("decompressStream() passes plain input through byte for byte, split anywhere", async () => {
  const text = "\uFEFF" + jsonl(50) + '{"last": "no newline, é"}';
  for (const size of [1, 2, 5, 7, 4096]) {
    assert.deepEqual(await decode(encoder.encode(text), { size }), { text, faults: [] }, `${size}`);
  }
  assert.deepEqual(await decode(new Uint8Array(0)), { text: "", faults: [] });
  assert.deepEqual(await decode(encoder.encode("{")), { text: "{", faults: [] });
});

Deno.test("decompressStream() passes a short first chunk on before any more bytes come", async () => {
  // A server's client may send one short line and wait for its answer before sending more.
  for (const first of ["{}\n", "[", " ", "\uFEFF"]) {
    const input = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode(first));
      },
    });
    const reader = input.pipeThrough(decompressStream({ onFault() {} })).getReader();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = await Promise.race([
      reader.read(),
      new Promise<"waiting">((resolve) => timer = setTimeout(() => resolve("waiting"), 2000)),
    ]);
    clearTimeout(timer);
    assert.notEqual(read, "waiting", JSON.stringify(first));
    assert.deepEqual(read, { done: false, value: encoder.encode(first) });
    await reader.cancel();
  }
});

Deno.test("decompressStream() reads gzip by its magic bytes, several members included", async () => {
  const text = jsonl(3000);
  const gzip = gzipSync(text);
  for (const size of [1, 1000, 65536]) {
    assert.deepEqual(await decode(gzip, { size }), { text, faults: [] }, `${size}`);
  }
  // pigz, bgzip and `cat a.gz b.gz` write one member after another.
  const members = [gzipSync(jsonl(10)), gzipSync("{}\n"), gzipSync(jsonl(2))];
  const joined = new Uint8Array(members.reduce((sum, member) => sum + member.length, 0));
  members.reduce((at, member) => (joined.set(member, at), at + member.length), 0);
  assert.deepEqual(await decode(joined), { text: jsonl(10) + "{}\n" + jsonl(2), faults: [] });
});

Deno.test("decompressStream() decodes the coding it is told", async () => {
  const text = jsonl(200);
  const encoded: Record<ContentCoding, Uint8Array> = {
    gzip: gzipSync(text),
    deflate: deflateSync(text),
    br: brotliCompressSync(text),
  };
  for (const [coding, bytes] of Object.entries(encoded) as [ContentCoding, Uint8Array][]) {
    assert.deepEqual(await decode(bytes, { coding, size: 100 }), { text, faults: [] }, coding);
  }
  const plain = await decode(encoder.encode(text), { coding: "gzip" });
  assert.equal(plain.text, "");
  assert.deepEqual(plain.faults, ["the input is not valid gzip data (incorrect header check)"]);
});

Deno.test("decompressStream() keeps what was decoded before gzip data breaks off", async () => {
  const text = jsonl(20_000);
  const gzip = gzipSync(text);
  const cut = await decode(gzip.subarray(0, gzip.length >> 1), { size: 65536 });
  assert.ok(cut.text.length > text.length / 4, `${cut.text.length} of ${text.length} read`);
  assert.ok(text.startsWith(cut.text));
  assert.deepEqual(cut.faults, [
    "the gzip data breaks off (unexpected end of file): nothing after it could be read",
  ]);

  // Junk after the last member: at most the last piece's lines are lost, never the file's.
  const junk = new Uint8Array(gzip.length + 4);
  junk.set(gzip);
  junk.set(encoder.encode("junk"), gzip.length);
  const tail = await decode(junk, { size: 65536 });
  assert.ok(text.startsWith(tail.text));
  assert.ok(tail.text.length > text.length - 64 * 1024, `${tail.text.length} of ${text.length}`);
  assert.equal(tail.faults.length, 1);
  assert.match(tail.faults[0], /^the gzip data breaks off \(/);
});

Deno.test("decompressStream() stops reading its input once its reader cancels", async () => {
  // What `--limit` does: a reader that has enough cancels, and the file must not be read on.
  for (const coding of ["sniff", "gzip"] as const) {
    const gzip = gzipSync(jsonl(100_000));
    const chunks = Math.ceil(gzip.length / 65536);
    let pulled = 0;
    let cancelled = false;
    const input = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled === chunks) return controller.close();
        controller.enqueue(gzip.slice(pulled * 65536, ++pulled * 65536));
      },
      cancel() {
        cancelled = true;
      },
    });
    const pair = decompressStream({ coding, onFault() {} });
    const piping = input.pipeTo(pair.writable).then(() => "read to the end", () => "stopped");
    const reader = pair.readable.getReader();
    assert.equal((await reader.read()).done, false);
    await reader.cancel(new Error("enough"));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      piping,
      new Promise<string>((resolve) => timer = setTimeout(() => resolve("still reading"), 5000)),
    ]);
    clearTimeout(timer);
    assert.equal(outcome, "stopped", coding);
    assert.ok(cancelled, coding);
    assert.ok(pulled < chunks, `${coding}: ${pulled} of ${chunks} chunks read`);
  }
});

Deno.test("decompressStream() names formats it does not read instead of reading them as text", async () => {
  const formats: [string, number[]][] = [
    ["zstd-compressed", [0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x04]],
    ["xz-compressed", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00]],
    ["bzip2-compressed", [...encoder.encode("BZh91AY&SY")]],
    ["zip-compressed", [0x50, 0x4b, 0x03, 0x04, 0x14, 0x00]],
    ["a Parquet file", [...encoder.encode("PAR1"), 0x15, 0x04]],
  ];
  for (const [what, bytes] of formats) {
    const { text, faults } = await decode(new Uint8Array([...bytes, 1, 2, 3]), { size: 2 });
    assert.equal(text, "", what);
    assert.equal(faults.length, 1, what);
    assert.match(faults[0], new RegExp(`^the input is ${what}, which cotfit does not read: `));
  }
});

Deno.test("decompressStream() errors with the input's own error, not a fault", async () => {
  for (const head of [gzipSync(jsonl(100)).subarray(0, 40), encoder.encode('{"a":1}\n{"b"')]) {
    const failure = new Error("client went away");
    const input = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(head);
        controller.error(failure);
      },
    });
    const faults: string[] = [];
    const output = input.pipeThrough(decompressStream({ onFault: (r) => faults.push(r) }));
    await assert.rejects(new Response(output).text(), (error) => error === failure);
    assert.deepEqual(faults, []);
  }
});
