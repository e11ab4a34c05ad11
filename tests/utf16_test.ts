import assert from "node:assert/strict";
import { type Utf16, utf16ToUtf8 } from "../src/utf16.ts";
import { decompressStream } from "../src/decompress.ts";

/** UTF-16 bytes of `text` in `order`, with its byte order mark. */
function utf16(text: string, order: Utf16): Uint8Array {
  const bytes = new Uint8Array(2 + text.length * 2);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, 0xfeff, order === "utf-16le");
  for (let i = 0; i < text.length; i++) {
    view.setUint16(2 + 2 * i, text.charCodeAt(i), order === "utf-16le");
  }
  return bytes;
}

async function read(
  bytes: Uint8Array,
  size: number,
): Promise<{ text: string; faults: string[] }> {
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += size) pieces.push(bytes.slice(at, at + size));
  const faults: string[] = [];
  const stream = ReadableStream.from(pieces)
    .pipeThrough(decompressStream({ onFault: (fault) => faults.push(fault.reason) }));
  return { text: await new Response(stream).text(), faults };
}

const TEXT = Array.from(
  { length: 300 },
  (_, i) => JSON.stringify({ id: i, value: `é ✓ 😀 ${"x".repeat(i % 7)}` }),
).join("\n") + "\n";

Deno.test("decompressStream() reads UTF-16 text, known by its byte order mark, as UTF-8", async () => {
  for (const order of ["utf-16le", "utf-16be"] as const) {
    // Odd sizes split code units and surrogate pairs (the emoji) between chunks.
    for (const size of [1, 3, 5, 1024, 1 << 20]) {
      assert.deepEqual(await read(utf16(TEXT, order), size), { text: TEXT, faults: [] }, order);
    }
  }
});

Deno.test("utf16ToUtf8() reports bytes that are not UTF-16 and keeps the text before them", async () => {
  const good = TEXT.slice(0, 4000);
  // A high surrogate followed by a letter is not UTF-16.
  const bytes = utf16(good + "\ud800A" + TEXT.slice(4000), "utf-16le");
  const faults: string[] = [];
  const stream = ReadableStream.from([bytes])
    .pipeThrough(utf16ToUtf8("utf-16le", (fault) => faults.push(fault.reason)));
  const text = await new Response(stream).text();
  assert.ok(good.startsWith(text));
  assert.ok(text.length > good.length - 1024, `${text.length} of ${good.length} kept`);
  assert.deepEqual(faults, [
    "the input is UTF-16 (LE) and breaks off into bytes that are not valid UTF-16: nothing after " +
    "them could be read",
  ]);
});
