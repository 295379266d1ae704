/**
 * Smoke runs of the benchmarks that need the e2e servers (agent, backend, apiserver), at the same
 * time, so CI's `npm run bench:smoke` stays well under a minute: smoke mode measures nothing, it
 * only proves every path works. The agent and webhook are bundled once here and the children use
 * that snapshot. Each child's output is printed whole when it ends; any failure fails the run.
 */
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import setup, { loadProvisionedEnv } from "../../test/e2e/global-setup.js";

const BENCHMARKS = ["agent", "backend-load", "apiserver"];
const TIMEOUT_MS = 120_000;

Object.assign(process.env, loadProvisionedEnv());
const removeBundles = setup();
const here = dirname(fileURLToPath(import.meta.url));

const outcomes = await Promise.all(
  BENCHMARKS.map(
    (name) =>
      new Promise<{ name: string; code: number | null; output: string; ms: number }>((resolve) => {
        const started = performance.now();
        const child = spawn(process.execPath, [join(here, `${name}.mjs`), "--smoke"], {
          env: { ...process.env, DSO_E2E_SKIP_BUNDLE: "1" },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let output = "";
        child.stdout.on("data", (c: Buffer) => (output += c.toString("utf8")));
        child.stderr.on("data", (c: Buffer) => (output += c.toString("utf8")));
        const timer = setTimeout(() => {
          output += `\n[smoke] ${name}: no exit within ${TIMEOUT_MS} ms, killed\n`;
          child.kill("SIGTERM");
        }, TIMEOUT_MS);
        child.on("close", (code) => {
          clearTimeout(timer);
          resolve({ name, code, output, ms: performance.now() - started });
        });
      }),
  ),
);
removeBundles?.();
for (const o of outcomes) {
  console.log(`\n===== ${o.name} --smoke: exit ${String(o.code)} in ${Math.round(o.ms)} ms =====`);
  console.log(o.output.trimEnd());
}
const failed = outcomes.filter((o) => o.code !== 0).map((o) => o.name);
if (failed.length > 0) {
  console.error(`\nbench smoke FAILED: ${failed.join(", ")}`);
  process.exit(1);
}
