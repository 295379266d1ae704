/**
 * Where the benchmarks find their fixtures, the webhook and the results directory. Found by
 * walking up from this module, so the same code works compiled (bench/dist/lib) and from source.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const MARKER = join("fixtures", "admission-review.json");

function findBenchRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, MARKER))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find bench/${MARKER} above ${import.meta.url}`);
    dir = parent;
  }
}

/** The repository's `bench/` directory. */
export const BENCH_ROOT = findBenchRoot();
/** The repository root. */
export const REPO_ROOT = dirname(BENCH_ROOT);
export const RESULTS_DIR = join(BENCH_ROOT, "results");
export const FIXTURES_DIR = join(BENCH_ROOT, "fixtures");
/** The webhook as `npx tsc -b` builds it (the bin `dso-webhook`). */
export const WEBHOOK_MAIN = join(REPO_ROOT, "packages", "webhook", "dist", "main.js");
