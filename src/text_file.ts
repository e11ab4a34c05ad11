/**
 * Reading a small text file a user wrote (the config, the prompt) strictly: a file saved in
 * another encoding (Latin-1, Windows-1252) would otherwise be read with U+FFFD in place of its
 * accented letters, and a preface or prompt would change without a word.
 *
 * Requires `--allow-read` for the file.
 *
 * @module
 */

/**
 * Reads `path` as UTF-8 (a byte order mark dropped), or as UTF-16 when it starts with a UTF-16
 * byte order mark, as Windows editors may save it.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { readTextStrict } from "./text_file.ts";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array([0x6f, 0x6b, 0x0a, 0x52, 0xe9, 0x0a]));
 * await assert.rejects(readTextStrict(path), /^Error: not UTF-8 text \(line 2, byte 5\)/);
 * await Deno.writeTextFile(path, "\ufeffcafé\n");
 * assert.equal(await readTextStrict(path), "café\n");
 * await Deno.writeFile(path, new Uint8Array([0x6f, 0x00, 0x6b, 0x00]));
 * await assert.rejects(readTextStrict(path), /NUL characters, as UTF-16 text without a byte order/);
 * ```
 *
 * @param path The file.
 * @returns Its text.
 * @throws {Error} When the file cannot be read (the system's error), is not valid UTF-8 or
 * UTF-16 (the message names the line and byte), or holds NUL characters.
 */
export async function readTextStrict(path: string | URL): Promise<string> {
  const bytes = await Deno.readFile(path);
  const encoding = bytes[0] === 0xff && bytes[1] === 0xfe
    ? "utf-16le"
    : bytes[0] === 0xfe && bytes[1] === 0xff
    ? "utf-16be"
    : "utf-8";
  let text: string;
  try {
    text = new TextDecoder(encoding, { fatal: true }).decode(bytes);
  } catch {
    const at = firstInvalidByte(bytes);
    let line = 1;
    for (let i = 0; i < at; i++) if (bytes[i] === 0x0a) line++;
    throw new Error(
      encoding === "utf-8"
        ? `not UTF-8 text (line ${line}, byte ${at + 1}): save it as UTF-8`
        : `not valid ${encoding.toUpperCase()} text: save it as UTF-8`,
    );
  }
  // Valid UTF-8, but not text: UTF-16 without its byte order mark reads this way.
  if (text.includes("\0")) {
    throw new Error(
      "holds NUL characters, as UTF-16 text without a byte order mark does: " +
        "save it as UTF-8",
    );
  }
  return text;
}

/** The offset of the first byte that does not start or continue a valid UTF-8 sequence. */
function firstInvalidByte(bytes: Uint8Array): number {
  // Bisect on prefixes: one that decodes (an unfinished last character allowed) holds no
  // invalid byte; the shortest that does not ends with it.
  let good = 0;
  let bad = bytes.length;
  while (bad - good > 1) {
    const middle = (good + bad) >> 1;
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, middle), { stream: true });
      good = middle;
    } catch {
      bad = middle;
    }
  }
  // That prefix may end in the unfinished character the bad byte breaks: it starts there.
  let start = good;
  while (start > 0 && good - start < 3 && (bytes[start - 1] & 0xc0) === 0x80) start--;
  const lead = bytes[start - 1];
  if (start > 0 && lead >= 0xc0) {
    const length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    if (good - (start - 1) < length) return start - 1;
  }
  return good;
}
