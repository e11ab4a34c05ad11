/**
 * A Bloom filter over the 32-bit key hashes the thought table is indexed by: which keys the table
 * may hold. Its "no" is certain, so a get for a key never generated and the write of a new row
 * skip SQLite's index; its "maybe" costs the lookup it would have cost anyway.
 *
 * @module
 */

/** Bit positions set per hash: with 12 bits or more a row, 3 give about 1% false "maybe" or less. */
const PROBES = 3;
const MAX_BITS = 2 ** 27;
const BITS_PER_ROW = 12;

/** The set of key hashes a table may hold; hashes are only ever added. */
export class KeyHashFilter {
  readonly #words: Int32Array;
  readonly #mask: number;

  /**
   * A filter for a table of about `rows` rows now, with room for a million more: 2 MiB for an
   * empty table, 16 MiB at most (past about 10 million rows, more of its answers are "maybe").
   *
   * @param rows Rows the table holds, or an upper estimate such as its largest rowid.
   * @returns An empty filter.
   *
   * @example Usage
   * ```ts
   * import assert from "node:assert/strict";
   * import { KeyHashFilter } from "./cache_filter.ts";
   *
   * const filter = KeyHashFilter.sizedFor(0);
   * filter.add(42);
   * assert.equal(filter.mayHold(42), true);
   * assert.equal(filter.mayHold(43), false);
   * ```
   */
  static sizedFor(rows: number): KeyHashFilter {
    let bits = 32;
    while (bits < MAX_BITS && bits < (rows + 2 ** 20) * BITS_PER_ROW) bits *= 2;
    return new KeyHashFilter(bits);
  }

  /** @param bits A power of two, at least 32. */
  constructor(bits: number) {
    if (!Number.isInteger(Math.log2(bits)) || bits < 32) {
      throw new RangeError(`Cannot size a filter of ${bits} bits: expected a power of two >= 32`);
    }
    this.#words = new Int32Array(bits / 32);
    this.#mask = bits - 1;
  }

  /** Records that the table may hold a key of this hash. */
  add(hash: number): void {
    const first = mix(hash);
    const step = mix(first ^ 0x5bd1e995) | 1;
    for (let i = 0; i < PROBES; i++) {
      const bit = (first + Math.imul(i, step)) & this.#mask;
      this.#words[bit >>> 5] |= 1 << (bit & 31);
    }
  }

  /** `false` when no key of this hash was added; `true` when one may have been. */
  mayHold(hash: number): boolean {
    const first = mix(hash);
    const step = mix(first ^ 0x5bd1e995) | 1;
    for (let i = 0; i < PROBES; i++) {
      const bit = (first + Math.imul(i, step)) & this.#mask;
      if ((this.#words[bit >>> 5] & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }
}

/** MurmurHash3's finaliser: spreads FNV's bits so the probes fall apart. */
function mix(hash: number): number {
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return hash ^ (hash >>> 16);
}
