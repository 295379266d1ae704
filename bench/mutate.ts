/**
 * bench:mutate: the webhook's review work in process, without HTTP.
 *
 * Two paths per pod: `mutatePod` alone (core's decision and patch), and the whole admission path
 * the server runs per request (AdmissionReview JSON string → parse → check → mutate → patch JSON →
 * base64 → response JSON) through @dso/webhook's own parseReview and answerReview.
 * Pods: 1, 10 and 50 secrets on a ~3 KB and a ~100 KB pod (fixtures/reviews.ts).
 */
import { Bench, type Task } from "tinybench";
import { DEFAULT_POLICY, mutatePod, type MutationResult } from "@dso/core";
import {
  answerReview,
  createLogger,
  createMetrics,
  parseReview,
  type MutateDeps,
} from "@dso/webhook";
import { reviewFixture, type ReviewFixture } from "./fixtures/reviews.js";
import { describeLoad, loadAverage } from "./lib/machine.js";
import { benchArgs } from "./lib/options.js";
import { markdownTable, round, startReport } from "./lib/report.js";
import { patchProblem, reviewProblem } from "./lib/review-check.js";

const GOAL_P99_MS = 1;

const { smoke, values } = benchArgs({ only: { type: "string", default: "" } });
// `--only 100KB` runs the matching cases alone, e.g. under --cpu-prof.
const only = String(values.only);
const report = startReport("mutate", smoke);

const fixtures: ReviewFixture[] = [];
for (const size of ["3KB", "100KB"] as const) {
  for (const secrets of [1, 10, 50]) fixtures.push(reviewFixture(secrets, size));
}

const deps: MutateDeps = {
  policy: { current: () => DEFAULT_POLICY },
  logger: createLogger("silent"),
  metrics: createMetrics(),
};

/** What the server does with one request body, minus HTTP and logging. */
function admit(body: string): string {
  const parsed = parseReview(JSON.parse(body));
  if (!parsed.ok) throw new Error(`bad review: ${parsed.message}`);
  return JSON.stringify(answerReview(parsed.request, deps).review);
}

function mutate(fixture: ReviewFixture): MutationResult {
  return mutatePod(fixture.review.request.object, {
    namespace: fixture.review.request.namespace,
    policy: DEFAULT_POLICY,
  });
}

// Correctness first: a fast wrong answer is not a result.
for (const fixture of fixtures) {
  const result = mutate(fixture);
  if (result.kind !== "patch")
    throw new Error(`${fixture.name}: mutatePod returned ${result.kind}`);
  const problem =
    patchProblem(result.patch, fixture) ??
    reviewProblem(admit(fixture.json), fixture, fixture.review.request.uid);
  if (problem !== undefined) throw new Error(`${fixture.name}: ${problem}`);
}

// CPU time per task (all threads, GC included): unlike wall time, it does not grow when a busy
// machine preempts the benchmark, so it is the steadier figure under load.
const cpuStart = new Map<string, NodeJS.CpuUsage>();
const cpuMs = new Map<string, number>();
const bench = new Bench({
  name: "mutate",
  time: smoke ? 20 : 1500,
  iterations: smoke ? 5 : 200,
  warmupTime: smoke ? 5 : 300,
  warmupIterations: smoke ? 2 : 50,
  throws: true,
  setup: (task, mode) => {
    if (task !== undefined && mode === "run") cpuStart.set(task.name, process.cpuUsage());
  },
  teardown: (task, mode) => {
    const start = task === undefined ? undefined : cpuStart.get(task.name);
    if (task === undefined || mode !== "run" || start === undefined) return;
    const used = process.cpuUsage(start);
    cpuMs.set(task.name, (used.user + used.system) / 1000);
  },
});

// Results go to a sink the optimizer cannot prove unused; a wrong kind throws and fails the run.
let sink = 0;
interface Case {
  fixture: ReviewFixture;
  path: "mutatePod" | "admission path";
}
const cases = new Map<string, Case>();
const wanted = (name: string): boolean => only === "" || name.includes(only);
for (const fixture of fixtures) {
  const mutateName = `mutatePod: ${fixture.name}`;
  cases.set(mutateName, { fixture, path: "mutatePod" });
  if (wanted(mutateName))
    bench.add(mutateName, () => {
      const result = mutate(fixture);
      if (result.kind !== "patch") throw new Error(`${fixture.name}: ${result.kind}`);
      sink += result.patch.length;
    });
  const admitName = `admission path: ${fixture.name}`;
  cases.set(admitName, { fixture, path: "admission path" });
  if (wanted(admitName))
    bench.add(admitName, () => {
      sink += admit(fixture.json).length;
    });
}

const loadBefore = loadAverage();
console.log(`bench:mutate${smoke ? " (smoke)" : ""}: ${describeLoad(loadBefore)}`);
await bench.run();
const loadAfter = loadAverage();
if (sink === 0) throw new Error("benchmark produced nothing");

interface Row {
  path: Case["path"];
  secrets: number;
  size: string;
  podBytes: number;
  reviewBytes: number;
  samples: number;
  opsPerSecond: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** Process CPU time per review (wall-clock figures include time preempted by other processes). */
  cpuMsPerOp: number;
  meetsGoal: boolean;
}

function rowOf(task: Task): Row {
  const c = cases.get(task.name);
  const result = task.result;
  if (c === undefined) throw new Error(`unknown task ${task.name}`);
  if (result.state !== "completed") {
    throw new Error(
      `${task.name}: ${result.state === "errored" ? result.error.message : result.state}`,
    );
  }
  const { latency, throughput } = result;
  return {
    path: c.path,
    secrets: c.fixture.secrets,
    size: c.fixture.size,
    podBytes: c.fixture.podBytes,
    reviewBytes: c.fixture.reviewBytes,
    samples: latency.samplesCount,
    opsPerSecond: throughput.mean,
    meanMs: latency.mean,
    p50Ms: latency.p50,
    p99Ms: latency.p99,
    p999Ms: latency.p999,
    maxMs: latency.max,
    cpuMsPerOp: (cpuMs.get(task.name) ?? Number.NaN) / latency.samplesCount,
    meetsGoal: latency.p99 <= GOAL_P99_MS,
  };
}

const rows = bench.tasks.map(rowOf);
const us = (ms: number): number => round(ms * 1000);
console.log(
  markdownTable(
    [
      "path",
      "pod",
      "secrets",
      "pod bytes",
      "ops/s",
      "mean µs",
      "p50 µs",
      "p99 µs",
      "p99.9 µs",
      "CPU µs/op",
      "samples",
      "p99 ≤ 1 ms",
    ],
    rows.map((r) => [
      r.path,
      r.size,
      r.secrets,
      r.podBytes,
      Math.round(r.opsPerSecond),
      us(r.meanMs),
      us(r.p50Ms),
      us(r.p99Ms),
      us(r.p999Ms),
      us(r.cpuMsPerOp),
      r.samples,
      r.meetsGoal ? "yes" : "NO",
    ]),
  ),
);
console.log(`load average before ${loadBefore.join(" ")}, after ${loadAfter.join(" ")}`);
const file = report.write({ goalP99Ms: GOAL_P99_MS, loadBefore, loadAfter, rows });
console.log(`wrote ${file}`);
