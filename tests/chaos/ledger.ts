/**
 * The loss check every scenario shares: each input record is written or rejected with a reason,
 * exactly once, and each written record is its input with thoughts added.
 *
 * @module
 */

import { type Corpus, recordMismatch } from "./corpus.ts";
import {
  BrokenLine,
  isRecord,
  parseJsonl,
  preview,
  type RejectLine,
  type ScenarioReport,
} from "./harness.ts";

/** Where the records of a corpus ended up. */
export interface Ledger {
  written: number;
  rejected: number;
  /** Input ids found neither in the output nor in the rejects. */
  missing: number;
  /** Ids seen more than once across output and rejects. */
  duplicated: number;
  /** Output or reject lines that match no input record. */
  unknown: number;
  /** Written records that are not their input plus thoughts. */
  wrong: number;
  /** Reject reasons, counted by their first words. */
  reasons: Map<string, number>;
}

/**
 * Accounts for every record of `corpus` in an output text and its rejects, recording each loss,
 * duplicate or corruption in `report` (at most a few examples of each).
 *
 * @param corpus What went in.
 * @param output The output JSONL text (`""` when there is none).
 * @param rejects The parsed rejects.
 * @param report Where failures go.
 * @returns The counts.
 */
export function account(
  corpus: Corpus,
  output: string,
  rejects: readonly RejectLine[],
  report: ScenarioReport,
): Ledger {
  const ledger: Ledger = {
    written: 0,
    rejected: 0,
    missing: 0,
    duplicated: 0,
    unknown: 0,
    wrong: 0,
    reasons: new Map(),
  };
  const seen = new Set<string>();
  const examples = new Map<string, number>();
  const fail = (kind: string, text: string) => {
    const shown = examples.get(kind) ?? 0;
    examples.set(kind, shown + 1);
    if (shown < 3) report.check(false, text);
    else if (shown === 3) report.check(false, `(more ${kind} failures not shown)`);
  };
  const claim = (id: unknown, where: string, line: unknown): boolean => {
    if (typeof id !== "string" || !corpus.byId.has(id)) {
      ledger.unknown++;
      fail("unknown", `${where} line matches no input record: ${preview(line)}`);
      return false;
    }
    if (seen.has(id)) {
      ledger.duplicated++;
      fail("duplicate", `record ${id} appears twice (again in ${where})`);
      return false;
    }
    seen.add(id);
    return true;
  };

  for (const value of parseJsonl(output)) {
    if (value instanceof BrokenLine) {
      ledger.unknown++;
      fail("broken", `output line ${value.line} is not JSON: ${preview(value)}`);
      continue;
    }
    const id = isRecord(value) ? value.id : undefined;
    if (!claim(id, "output", value)) continue;
    ledger.written++;
    const mismatch = recordMismatch(corpus.byId.get(id as string)!, value);
    if (mismatch !== null) {
      ledger.wrong++;
      fail("wrong", `record ${id} written wrong: ${mismatch}`);
    }
  }
  for (const reject of rejects) {
    let id: unknown;
    try {
      const raw: unknown = JSON.parse(reject.raw);
      id = isRecord(raw) ? raw.id : undefined;
    } catch {
      id = undefined;
    }
    if (!claim(id, "rejects", reject)) continue;
    ledger.rejected++;
    const kind = reasonKind(reject.reason);
    ledger.reasons.set(kind, (ledger.reasons.get(kind) ?? 0) + 1);
  }
  for (const record of corpus.records) {
    if (seen.has(record.id)) continue;
    ledger.missing++;
    fail("missing", `record ${record.id} is neither written nor rejected`);
  }
  return ledger;
}

/** A reject reason without its record-specific details: `turn 2: upstream unavailable`. */
export function reasonKind(reason: string): string {
  return reason.split(":").slice(0, 2).join(":").trim();
}

/** Prints the ledger's figures and checks nothing was lost, duplicated or corrupted. */
export function reportLedger(ledger: Ledger, total: number, report: ScenarioReport): void {
  report.figure("records in", total);
  report.figure("written", ledger.written);
  report.figure("rejected (with a reason)", ledger.rejected);
  if (ledger.reasons.size > 0) {
    const reasons = [...ledger.reasons].sort((a, b) => b[1] - a[1]);
    report.figure("reject reasons", reasons.map(([kind, n]) => `${kind} x${n}`).join("; "));
  }
  report.figure(
    "lost / duplicated / unknown / wrong",
    [
      ledger.missing,
      ledger.duplicated,
      ledger.unknown,
      ledger.wrong,
    ].join(" / "),
  );
  report.check(
    ledger.written + ledger.rejected === total,
    `written ${ledger.written} + rejected ${ledger.rejected} != ${total} records in`,
  );
}
