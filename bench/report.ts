/**
 * The benchmark report: a Markdown table for the terminal and the README, and the JSON written
 * to `bench/results.json`.
 *
 * @module
 */

import type { Procfs } from "./procfs.ts";
import type { Figure } from "./scenarios.ts";

/** The machine a run measured, so figures are read against it. */
export interface Machine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly deno: string;
  readonly v8: string;
  readonly os: string;
}

/** Everything `bench/results.json` holds. */
export interface Results {
  /** `full` (the sizes) or `quick`. */
  readonly mode: "full" | "quick";
  /** ISO time the run started. */
  readonly startedAt: string;
  readonly machine: Machine;
  /**
   * `/proc/loadavg`'s 1-minute load when the run started and ended: above ~0.5, something else
   * was using the CPUs the figures assume are free.
   */
  readonly loadAverage: { readonly start: number; readonly end: number };
  /** Seconds each scenario took, by name. */
  readonly durations: Readonly<Record<string, number>>;
  readonly figures: readonly Figure[];
  /** The command that reproduces the run. */
  readonly command: string;
}

/**
 * Renders figures as a Markdown table: group, setting, value, target, verdict and notes.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { markdownTable } from "./report.ts";
 *
 * const table = markdownTable([{
 *   group: "cache",
 *   setting: "rerun",
 *   value: 30000,
 *   unit: "conversations/s",
 *   target: "> 20,000",
 *   pass: true,
 *   note: "all hits",
 *   details: {},
 * }]);
 * assert.match(table, /\| cache +\| rerun +\| 30,000 conversations\/s \| > 20,000 \| yes +\| all hits \|/);
 * ```
 *
 * @param figures The figures, in order.
 * @returns The table, one row per figure, lines joined by `\n`.
 */
export function markdownTable(figures: readonly Figure[]): string {
  const rows = figures.map((figure) => [
    figure.group,
    figure.setting,
    `${figure.value.toLocaleString("en")} ${figure.unit}`,
    figure.target ?? "",
    figure.pass === undefined ? "" : figure.pass ? "yes" : "**no**",
    figure.note,
  ]);
  const header = ["figure", "setting", "measured", "target", "met", "notes"];
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column].length))
  );
  const line = (cells: string[]) =>
    `| ${cells.map((cell, column) => cell.padEnd(widths[column])).join(" | ")} |`;
  return [
    line(header),
    line(widths.map((width) => "-".repeat(width))),
    ...rows.map(line),
  ].join("\n");
}

/**
 * The 1-minute load average from `/proc/loadavg`, or `NaN` when unknown.
 *
 * @param procfs Reads `/proc/loadavg`.
 * @returns The load average.
 */
export async function loadAverage(procfs: Procfs): Promise<number> {
  return Number.parseFloat(await procfs.read("/proc/loadavg") ?? "NaN");
}

/**
 * Describes this machine from `/proc` and `Deno`.
 *
 * Requires `--allow-sys`.
 *
 * @param procfs Reads `/proc/cpuinfo`.
 * @returns CPU count and model, memory, Deno and V8 versions.
 */
export async function describeMachine(procfs: Procfs): Promise<Machine> {
  const cpuinfo = await procfs.read("/proc/cpuinfo") ?? "";
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? "unknown";
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel,
    memoryGiB: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    os: `${Deno.build.os} ${Deno.osRelease()}`,
  };
}
