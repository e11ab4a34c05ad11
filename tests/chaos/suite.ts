/**
 * What the chaos runner hands each scenario, and what a scenario is.
 *
 * @module
 */

import type { ScenarioReport } from "./harness.ts";

/** Per-scenario context. */
export interface SuiteContext {
  /** A fresh directory for this scenario's files. */
  readonly dir: string;
  /** The suite's seed: data, faults and kill moments derive from it. */
  readonly seed: number;
}

/** One chaos scenario: fills its report; a thrown error also fails it. */
export interface Scenario {
  /** Short name, used by `--only`. */
  readonly name: string;
  /** One line saying what it proves. */
  readonly title: string;
  readonly run: (report: ScenarioReport, context: SuiteContext) => Promise<void>;
}
