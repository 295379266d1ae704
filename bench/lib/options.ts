/** Command-line options shared by the benchmarks; `--smoke` or `BENCH_SMOKE=1` selects smoke mode. */
import { parseArgs } from "node:util";

export interface BenchArgs {
  /** Tiny iteration counts and durations: checks that every path works, measures nothing. */
  smoke: boolean;
  values: Record<string, string | boolean | undefined>;
}

export function benchArgs(
  options: Record<string, { type: "string" | "boolean"; default?: string | boolean }> = {},
): BenchArgs {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { ...options, smoke: { type: "boolean", default: false } },
    strict: true,
    allowPositionals: false,
  });
  const smokeEnv = process.env.BENCH_SMOKE;
  const smoke = values.smoke || (smokeEnv !== undefined && !["", "0", "false"].includes(smokeEnv));
  return { smoke, values };
}
