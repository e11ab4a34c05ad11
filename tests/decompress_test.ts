import assert from "node:assert/strict";
import {
  brotliCompressSync,
  constants,
  crc32,
  deflateRawSync,
  deflateSync,
  gunzipSync,
  gzipSync,
} from "node:zlib";
import { type ContentCoding, decompressStream } from "../src/decompress.ts";
import type { InputFault } from "../src/types.ts";

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
): Promise<{ text: string; faults: InputFault[] }> {
  const size = options.size ?? bytes.length;
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += size) pieces.push(bytes.slice(at, at + size));
  const faults: InputFault[] = [];
  const stream = ReadableStream.from(pieces)
    .pipeThrough(decompressStream({ coding: options.coding, onFault: (f) => faults.push(f) }));
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
  assert.deepEqual(plain.faults, [
    { reason: "the input is not valid gzip data (no gzip header)", cut: true },
  ]);
  assert.deepEqual(await decode(new Uint8Array(0), { coding: "gzip" }), { text: "", faults: [] });
});

/** The bytes of `parts`, one after another. */
function join(...parts: Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  parts.reduce((at, part) => (joined.set(part, at), at + part.length), 0);
  return joined;
}

/** The 8-byte gzip trailer of `text`: its CRC-32 and length, little-endian. */
function trailerOf(text: Uint8Array): Uint8Array {
  const trailer = new DataView(new ArrayBuffer(8));
  trailer.setUint32(0, crc32(text), true);
  trailer.setUint32(4, text.length, true);
  return new Uint8Array(trailer.buffer);
}

Deno.test("decompressStream() reads all gzip data before junk after it, and counts the junk", async () => {
  // As `zcat` does ("trailing garbage ignored"), but the junk is accounted for.
  for (const count of [3, 3000]) {
    const text = jsonl(count);
    const gzip = gzipSync(text);
    const input = join(gzip, encoder.encode("garbage after"));
    for (const size of [1, 7, 4096, 65536, input.length]) {
      assert.deepEqual(await decode(input, { size }), {
        text,
        faults: [{
          reason: `the gzip data ends after ${gzip.length} bytes; the 13 bytes after it are not ` +
            "gzip data and were not read",
          cut: false,
        }],
      }, `${count} records, pieces of ${size}`);
    }
  }
  // A byte that starts gzip's magic but not the rest is junk too.
  const gzip = gzipSync(jsonl(5));
  assert.deepEqual(await decode(join(gzip, new Uint8Array([0x1f, 0x8c])), { size: 1 }), {
    text: jsonl(5),
    faults: [{
      reason: `the gzip data ends after ${gzip.length} bytes; the 2 bytes after it are not gzip ` +
        "data and were not read",
      cut: false,
    }],
  });
});

Deno.test("decompressStream() ignores zero bytes after gzip data, as gzip does", async () => {
  const text = jsonl(100);
  const padded = join(gzipSync(text), new Uint8Array(512), gzipSync("{}\n"), new Uint8Array(3));
  // Zeros end the data: a member after them is not looked for, as gzip does not.
  for (const size of [1, 100, padded.length]) {
    assert.deepEqual(await decode(padded, { size }), {
      text,
      faults: [{
        reason: `the gzip data ends after ${gzipSync(text).length} bytes; the ${
          padded.length - gzipSync(text).length
        } bytes after it are not gzip data and were not read`,
        cut: false,
      }],
    }, `${size}`);
    const zeros = join(gzipSync(text), new Uint8Array(512));
    assert.deepEqual(await decode(zeros, { size }), { text, faults: [] }, `${size}`);
  }
});

Deno.test("decompressStream() reads every whole member before a cut one", async () => {
  // pigz or bgzip output cut short: member 1 whole, then 20 bytes of member 2.
  const text = jsonl(3000);
  const first = gzipSync(text);
  const input = join(first, gzipSync(jsonl(3000)).subarray(0, 20));
  for (const size of [1, 4096, 65536, input.length]) {
    const cut = await decode(input, { size });
    assert.ok(cut.text.startsWith(text), `pieces of ${size}: ${cut.text.length} of ${text.length}`);
    assert.equal(cut.text, gunzipSync(input, { finishFlush: constants.Z_SYNC_FLUSH }).toString());
    assert.deepEqual(cut.faults, [{
      reason: `the gzip data breaks off after ${input.length} bytes (unexpected end of file in ` +
        "member 2): nothing after it could be read",
      cut: true,
    }]);
  }
});

Deno.test("decompressStream() keeps all that was decoded before gzip data breaks off", async () => {
  const text = jsonl(20_000);
  const gzip = gzipSync(text);
  // Cut in the deflate data, in the trailer, in the header.
  for (const length of [gzip.length >> 1, gzip.length - 5, gzip.length - 1, 5]) {
    const input = gzip.subarray(0, length);
    // zlib's own decoding of all it can, the output of the last write included.
    const decodable = gunzipSync(input, { finishFlush: constants.Z_SYNC_FLUSH }).toString();
    for (const size of [1000, 65536]) {
      assert.deepEqual(await decode(input, { size }), {
        text: decodable,
        faults: [{
          reason: `the gzip data breaks off after ${length} bytes (unexpected end of file): ` +
            "nothing after it could be read",
          cut: true,
        }],
      }, `cut at ${length}, pieces of ${size}`);
    }
  }
});

Deno.test("decompressStream() reports corrupt gzip data after what was decoded before it", async () => {
  const text = jsonl(20_000);
  const gzip = gzipSync(text);
  const corrupt = new Uint8Array(gzip); // a copy: a Buffer's slice() is a view
  const at = gzip.length >> 1;
  corrupt.fill(0xff, at, at + 64);
  const { text: read, faults } = await decode(corrupt, { size: 65536 });
  assert.ok(text.startsWith(read));
  // At most the inflater's 16 KiB output chunk being filled is lost with the corrupt write.
  const decodable = gunzipSync(gzip.subarray(0, at), { finishFlush: constants.Z_SYNC_FLUSH });
  assert.ok(read.length >= decodable.length - 16 * 1024, `${read.length} of ${decodable.length}`);
  assert.equal(faults.length, 1);
  assert.match(faults[0].reason, /^the gzip data is corrupt between bytes \d+ and \d+ \(.+\): /);
  assert.equal(faults[0].cut, true);

  // A trailer that does not match the text: the text is out, but it may be damaged.
  for (
    const [byte, check] of [[-8, "incorrect data check"], [-1, "incorrect length check"]] as const
  ) {
    const damaged = join(gzipSync("{}\n"), gzip);
    damaged[damaged.length + byte] ^= 1;
    assert.deepEqual(await decode(damaged, { size: 4096 }), {
      text: "{}\n" + text,
      faults: [{
        reason: `the gzip data is corrupt after ${damaged.length} bytes (${check} in member 2): ` +
          "nothing after it could be read",
        cut: true,
      }],
    }, check);
  }

  // A member after the first whose header names no deflate data.
  const method = join(gzipSync("{}\n"), new Uint8Array([0x1f, 0x8b, 7, 0, 0, 0, 0, 0, 0, 3]));
  assert.deepEqual(await decode(method), {
    text: "{}\n",
    faults: [{
      reason: `the gzip data is corrupt after ${gzipSync("{}\n").length} bytes (unknown ` +
        "compression method in the header of member 2): nothing after it could be read",
      cut: true,
    }],
  });
});

Deno.test("decompressStream() reads every optional gzip header field, split anywhere", async () => {
  // FEXTRA (bgzip's block size), FNAME, FCOMMENT and FHCRC, as RFC 1952 orders them.
  const text = encoder.encode(jsonl(3));
  const fixed = [0x1f, 0x8b, 8, 0x04 | 0x08 | 0x10 | 0x02, 0, 0, 0, 0, 0, 3];
  const fields = [...fixed, 6, 0, 0x42, 0x43, 2, 0, 0x10, 0, ...encoder.encode("a.jsonl\0é\0")];
  const headerCrc = crc32(new Uint8Array(fields)) & 0xffff;
  const header = new Uint8Array([...fields, headerCrc & 0xff, headerCrc >> 8]);
  const member = join(header, deflateRawSync(text), trailerOf(text));
  const input = join(member, gzipSync("{}\n"), member);
  const expected = jsonl(3) + "{}\n" + jsonl(3);
  for (let at = 0; at <= input.length; at++) {
    const faults: InputFault[] = [];
    const chunks = [input.subarray(0, at), input.subarray(at)];
    const stream = ReadableStream.from(chunks)
      .pipeThrough(decompressStream({ onFault: (fault) => faults.push(fault) }));
    assert.deepEqual({ text: await new Response(stream).text(), faults }, {
      text: expected,
      faults: [],
    }, `split at ${at}`);
  }
  const badCrc = header.slice();
  badCrc[badCrc.length - 1] ^= 1;
  const bad = await decode(join(badCrc, deflateRawSync(text), trailerOf(text)));
  assert.deepEqual(bad.faults, [
    { reason: "the input is not valid gzip data (header crc mismatch)", cut: true },
  ]);
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
    assert.match(
      faults[0].reason,
      new RegExp(`^the input is ${what}, which cotfit does not read: `),
    );
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
    const output = input.pipeThrough(decompressStream({ onFault: (f) => faults.push(f.reason) }));
    await assert.rejects(new Response(output).text(), (error) => error === failure);
    assert.deepEqual(faults, []);
  }
});
