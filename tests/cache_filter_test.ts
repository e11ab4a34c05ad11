import assert from "node:assert/strict";
import { KeyHashFilter } from "../src/cache_filter.ts";

/** Distinct pseudo-random 32-bit integers, the same every run. */
function hashes(count: number, seed: number): Int32Array {
  const out = new Int32Array(count);
  let state = seed;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) | 0;
    out[i] = state;
  }
  return out;
}

Deno.test("KeyHashFilter never says no to a hash it was given", () => {
  const filter = KeyHashFilter.sizedFor(0);
  const added = [...hashes(200_000, 1), 0, -1, 2 ** 31 - 1, -(2 ** 31)];
  for (const hash of added) filter.add(hash);
  for (const hash of added) assert.equal(filter.mayHold(hash), true, `hash ${hash}`);
});

Deno.test("KeyHashFilter sized for a table says maybe to about 1% of other hashes", () => {
  const rows = 1_000_000;
  const filter = KeyHashFilter.sizedFor(rows);
  for (const hash of hashes(rows, 2)) filter.add(hash);
  // Another stretch of the generator's cycle: none of the hashes added.
  const others = hashes(100_000, 3);
  const maybes = others.filter((hash) => filter.mayHold(hash)).length;
  assert.ok(maybes / others.length < 0.01, `${maybes} of ${others.length}`);
  assert.equal(KeyHashFilter.sizedFor(0).mayHold(12345), false);
});

Deno.test("KeyHashFilter refuses a size that is not a power of two", () => {
  assert.throws(() => new KeyHashFilter(1000), RangeError);
  assert.throws(() => new KeyHashFilter(16), RangeError);
});
