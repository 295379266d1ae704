// The common ending of the end-to-end benchmarks: run the measurement, always tear the servers
// down, write the JSON, and fail the process (exit 1) when anything went wrong, so the smoke
// mode in CI cannot pass on an error.
import { teardownAll } from "../../test/e2e/harness/processes.js";

export async function runBench(
  name: string,
  report: { write(results: unknown): string },
  failures: string[],
  main: () => Promise<Record<string, unknown>>,
): Promise<never> {
  let results: Record<string, unknown> = {};
  try {
    results = await main();
  } catch (err) {
    failures.push(err instanceof Error ? err.message : String(err));
  } finally {
    await teardownAll();
  }
  const file = report.write({ ...results, failures });
  console.log(`\nresults: ${file}`);
  if (failures.length > 0) {
    console.error(`bench:${name} FAILED:\n- ${failures.join("\n- ")}`);
  }
  // A harness timer must not hold the benchmark open.
  process.exit(failures.length > 0 ? 1 : 0);
}
