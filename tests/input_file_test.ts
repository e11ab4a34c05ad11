import assert from "node:assert/strict";
import { openInput } from "../src/input_file.ts";
import { InputReadError } from "../src/inputs.ts";

Deno.test("openInput() names the file when a read fails, not only when it opens", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  const root = await Deno.makeTempDir({ prefix: "cotfit-input-file-" });
  // Linux opens a directory for reading, then fails its first read (EISDIR), even for root.
  const bytes = await openInput(root);
  await assert.rejects(
    () => Array.fromAsync(bytes),
    (error: InputReadError) =>
      error instanceof InputReadError && error.path === root && /directory/i.test(error.reason),
  );
});
