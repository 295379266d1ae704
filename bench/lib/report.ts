/**
 * Output of a benchmark: a Markdown table on stdout (pasteable into bench/README.md) and the
 * full figures as JSON in bench/results/<name>-<timestamp>.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { machineInfo, type MachineInfo } from "./machine.js";
import { RESULTS_DIR } from "./paths.js";

export type Cell = string | number;

/** A Markdown table; numbers are right-aligned. */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly Cell[])[],
): string {
  const text = rows.map((row) => row.map((cell) => String(cell)));
  const widths = headers.map((h, i) =>
    Math.max(h.length, ...text.map((row) => (row[i] ?? "").length)),
  );
  const numeric = headers.map(
    (_, i) => rows.length > 0 && rows.every((row) => typeof row[i] === "number"),
  );
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => (numeric[i] === true ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join(" | ")} |`;
  const rule = `|${widths.map((w, i) => (numeric[i] === true ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`;
  return [line(headers), rule, ...text.map(line)].join("\n");
}

/** Rounds for display: 3 significant decimals below 10, 1 decimal below 1000, integers above. */
export function round(value: number): number {
  if (!Number.isFinite(value)) return value;
  const abs = Math.abs(value);
  const digits = abs < 10 ? 3 : abs < 1000 ? 1 : 0;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export interface ResultFile<T> {
  benchmark: string;
  smoke: boolean;
  startedAt: string;
  finishedAt: string;
  machine: MachineInfo;
  /** Load average when the benchmark finished (the start one is in `machine`). */
  loadAverageAtEnd: [number, number, number];
  results: T;
}

/** A timestamp usable in a file name: 2026-11-23T01-40-12Z. */
export function fileTimestamp(date: Date): string {
  return date
    .toISOString()
    .replace(/\.\d+Z$/, "Z")
    .replaceAll(":", "-");
}

/** Captures the machine now; `write` later adds the end time and load and saves the JSON. */
export function startReport(benchmark: string, smoke: boolean) {
  const started = new Date();
  const machine = machineInfo();
  return {
    machine,
    write(results: unknown): string {
      const finished = new Date();
      const file: ResultFile<unknown> = {
        benchmark,
        smoke,
        startedAt: started.toISOString(),
        finishedAt: finished.toISOString(),
        machine,
        loadAverageAtEnd: machineInfo().loadAverage,
        results,
      };
      mkdirSync(RESULTS_DIR, { recursive: true });
      const suffix = smoke ? "-smoke" : "";
      const path = join(RESULTS_DIR, `${benchmark}${suffix}-${fileTimestamp(started)}.json`);
      writeFileSync(path, JSON.stringify(file, null, 2) + "\n");
      return path;
    },
  };
}
