import assert from "node:assert/strict";
import { loadTokenizer } from "../src/tokenizer.ts";
import {
  costOf,
  countMessageTokens,
  formatCost,
  formatDuration,
  formatSummary,
  UsageMeter,
} from "../src/usage.ts";

Deno.test("countMessageTokens() adds per-message framing and reply priming", async () => {
  const { countTokens } = await loadTokenizer();
  assert.equal(countMessageTokens([], countTokens), 3);
  assert.equal(countMessageTokens([{ role: "user", content: "" }], countTokens), 3 + 4);
  assert.equal(
    countMessageTokens([
      { role: "system", content: "Hello, world!" },
      { role: "user", content: "The quick brown fox jumps over the lazy dog." },
    ], countTokens),
    3 + (4 + 4) + (4 + 10),
  );
});

Deno.test("costOf() prices input and output per million tokens", () => {
  const prices = { inputPerMillion: 2.5, outputPerMillion: 10 };
  assert.equal(costOf(0, 0, prices), 0);
  assert.equal(costOf(1_000_000, 0, prices), 2.5);
  assert.equal(costOf(0, 500_000, prices), 5);
  assert.equal(costOf(400_000, 100_000, prices), 2);
});

function sampleMeter(): UsageMeter {
  const meter = new UsageMeter(10_000);
  meter.addCall({ inputTokens: 1_200_000, outputTokens: 300_000, estimated: false });
  meter.addCall({ inputTokens: 800, outputTokens: 200, estimated: true });
  meter.addCacheHit();
  meter.addCacheHit();
  meter.addDedupeHit();
  meter.addKeptThought();
  meter.addKeptThought();
  meter.addRetry();
  meter.addRetry();
  meter.addRetry();
  meter.addFailure("timeout");
  meter.addFailure("invalid_thought");
  meter.addFailure("timeout");
  meter.addFailure("__proto__");
  for (let i = 0; i < 4; i++) meter.addConversation();
  meter.addRecord("written");
  meter.addRecord("written");
  meter.addRecord("written");
  meter.addRecord("rejected");
  meter.addRecord("skipped");
  return meter;
}

Deno.test("UsageMeter.snapshot() returns every counter as plain JSON", () => {
  const snapshot = sampleMeter().snapshot(12_000);
  assert.deepEqual(JSON.parse(JSON.stringify(snapshot)), {
    calls: 2,
    abortedCalls: 0,
    cacheHits: 2,
    dedupeHits: 1,
    retries: 3,
    keptThoughts: 2,
    failures: { timeout: 2, invalid_thought: 1, ["__proto__"]: 1 },
    inputTokens: 1_200_800,
    outputTokens: 300_200,
    estimatedCalls: 1,
    written: 3,
    rejected: 1,
    skipped: 1,
    discarded: 0,
    conversations: 4,
    wallSeconds: 2,
    conversationsPerSecond: 2,
  });
  assert.equal(Object.getPrototypeOf(snapshot.failures), Object.prototype);
});

Deno.test("UsageMeter.snapshot() reports no rate before time has passed", () => {
  const meter = new UsageMeter(5_000);
  meter.addConversation();
  const snapshot = meter.snapshot(5_000);
  assert.equal(snapshot.wallSeconds, 0);
  assert.equal(snapshot.conversationsPerSecond, 0);
});

Deno.test("UsageMeter.cost() prices the tokens so far, or null without prices", () => {
  const meter = new UsageMeter(0);
  assert.equal(meter.cost({ inputPerMillion: 1, outputPerMillion: 4 }), 0);
  meter.addCall({ inputTokens: 2_000_000, outputTokens: 500_000, estimated: false });
  assert.equal(meter.cost({ inputPerMillion: 1, outputPerMillion: 4 }), 4);
  assert.equal(meter.cost(null), null);
  assert.deepEqual(meter.tokens, { input: 2_000_000, output: 500_000 });
});

Deno.test("formatSummary() renders a run's counters for humans", () => {
  const snapshot = sampleMeter().snapshot(10_000 + 3_723_000);
  const prices = { inputPerMillion: 0.15, outputPerMillion: 0.6 };
  assert.equal(
    formatSummary(snapshot, prices),
    [
      "records   3 written, 1 rejected, 1 skipped (blank)",
      "calls     2 (cache hits 2, dedupe hits 1, retries 3); 2 answers already had a thought, kept",
      "failures  timeout 2, invalid_thought 1, __proto__ 1",
      "tokens    1,200,800 in, 300,200 out (some estimated)",
      "cost      $0.36",
      "time      1h02m, 0.0 conv/s",
    ].join("\n"),
  );
});

Deno.test("formatSummary() says when nothing failed, nothing was estimated or prices are unknown", () => {
  const meter = new UsageMeter(0);
  meter.addCall({ inputTokens: 10, outputTokens: 5, estimated: false });
  meter.addConversation();
  const text = formatSummary(meter.snapshot(500), null);
  assert.equal(text.split("\n")[1], "calls     1 (cache hits 0, dedupe hits 0, retries 0)");
  assert.deepEqual(text.split("\n").slice(2), [
    "failures  none",
    "tokens    10 in, 5 out",
    "cost      unknown (no prices configured)",
    "time      1s, 2.0 conv/s",
  ]);
});

Deno.test("formatCost() shows cents, or four decimals below a cent", () => {
  assert.equal(formatCost(0), "$0.00");
  assert.equal(formatCost(0.004), "$0.0040");
  assert.equal(formatCost(1234.5), "$1234.50");
});

Deno.test("formatDuration() picks seconds, minutes or hours", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(59.4), "59s");
  assert.equal(formatDuration(60), "1m00s");
  assert.equal(formatDuration(3599), "59m59s");
  assert.equal(formatDuration(3600), "1h00m");
  assert.equal(formatDuration(90_000), "25h00m");
});
