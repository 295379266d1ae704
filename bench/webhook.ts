/**
 * bench:webhook: the real webhook process over HTTPS on loopback, with keep-alive connections as
 * the API server uses them.
 *
 * 1. Start-to-ready: spawn → first 200 on /readyz (several cold starts).
 * 2. Latency at fixed rates (open loop, default 500, 1000, 2000 reviews/s).
 * 3. Sustained maximum reviews/s (closed loop) for the ~3 KB and the ~100 KB pod.
 * Throughout: the webhook's CPU time per review and peak RSS (from /proc). The webhook is pinned
 * to the first allowed CPU and this driver to the second when `taskset` exists. Every answer is
 * checked (status, uid; a sample fully: the patch is decoded and applied), and any error fails
 * the run.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { generateServingCertificate } from "@dso/webhook";
import { reviewFixture, reviewWithUid, type ReviewFixture } from "./fixtures/reviews.js";
import {
  closedLoop,
  fixedRate,
  keepAliveAgent,
  type PhaseResult,
  type ReviewSource,
} from "./lib/https-driver.js";
import { allowedCpus, describeLoad, hasTaskset, loadAverage } from "./lib/machine.js";
import { benchArgs } from "./lib/options.js";
import { RESULTS_DIR, WEBHOOK_MAIN } from "./lib/paths.js";
import { RssSampler, readCpuMs, readMemory, readRunQueueWaitMs } from "./lib/proc-stats.js";
import { markdownTable, round, startReport } from "./lib/report.js";
import { reviewProblem } from "./lib/review-check.js";
import { startWebhook, type RunningWebhook, type WebhookLaunch } from "./lib/webhook-process.js";

/** Connections the fixed-rate phases may use. */
const MAX_CONNECTIONS = 64;
/**
 * Connections opened by the warm-up and kept idle between phases. The API server keeps a pool of
 * idle keep-alive connections per webhook (HTTP/1.1); 25 is an assumed size of that warm pool.
 */
const WARM_CONNECTIONS = 25;

const GOALS = { coldStartMs: 250, reviewsPerSecond: 2000, p99At1000Ms: 10, rssMiB: 96 };

const { smoke, values } = benchArgs({
  entry: { type: "string", default: WEBHOOK_MAIN },
  duration: { type: "string", default: "10" },
  rates: { type: "string", default: "500,1000,2000" },
  connections: { type: "string", default: "8" },
  starts: { type: "string", default: "5" },
  profile: { type: "boolean", default: false },
  "node-flags": { type: "string", default: "" },
});
const entry = resolve(String(values.entry));
// For experiments with V8 flags (e.g. --node-flags=--max-semi-space-size=4); recorded in the JSON.
const nodeFlags = String(values["node-flags"])
  .split(" ")
  .filter((f) => f !== "");
const phaseMs = smoke ? 500 : Number(values.duration) * 1000;
const rates = String(values.rates).split(",").map(Number);
const connections = Number(values.connections);
const starts = smoke ? 1 : Number(values.starts);
if (![phaseMs, connections, starts, ...rates].every((n) => Number.isFinite(n) && n > 0)) {
  throw new Error("--duration, --rates, --connections and --starts take positive numbers");
}
if (!existsSync(entry)) {
  console.error(`bench:webhook: ${entry} does not exist: build the webhook first (npx tsc -b)`);
  process.exit(2);
}

const report = startReport("webhook", smoke);
// The webhook gets one CPU and the driver another, so the driver does not compete with what it
// measures; without taskset or a second CPU nothing is pinned.
const [webhookCpu, driverCpu] = hasTaskset() ? allowedCpus() : [];
const pinned = webhookCpu !== undefined && driverCpu !== undefined;
const driverPinned =
  pinned &&
  spawnSync("taskset", ["-a", "-cp", String(driverCpu), String(process.pid)], { stdio: "ignore" })
    .status === 0;

const SERVICE = "dso-webhook";
const NAMESPACE = "dso-system";
const dir = mkdtempSync(join(tmpdir(), "dso-bench-"));
const { pair, ca } = await generateServingCertificate(SERVICE, NAMESPACE, new Date());
const certFile = join(dir, "tls.crt");
const keyFile = join(dir, "tls.key");
writeFileSync(certFile, pair.cert);
writeFileSync(keyFile, pair.key, { mode: 0o600 });
const launch: WebhookLaunch = {
  entry,
  certFile,
  keyFile,
  ca,
  servername: `${SERVICE}.${NAMESPACE}.svc`,
  cpu: pinned ? webhookCpu : undefined,
  nodeArgs: [
    ...nodeFlags,
    ...(values.profile === true ? ["--cpu-prof", `--cpu-prof-dir=${RESULTS_DIR}`] : []),
  ],
  readyTimeoutMs: 30_000,
};

/** Round-robin over pre-serialized reviews, each with its own uid, as the API server sends them. */
function sourceFor(fixture: ReviewFixture): ReviewSource {
  const bodies = Array.from({ length: 256 }, (_, i) => {
    const uid = `bench-${fixture.secrets}-${fixture.size}-${String(i).padStart(4, "0")}`;
    return { uid, body: Buffer.from(reviewWithUid(fixture, uid)) };
  });
  let i = 0;
  return {
    next: () => bodies[i++ % bodies.length] ?? { uid: "", body: Buffer.alloc(0) },
    check(body, uid, thorough) {
      if (thorough) return reviewProblem(body, fixture, uid);
      if (!body.includes(`"uid":"${uid}"`)) return `answer is not for uid ${uid}`;
      if (!body.includes('"allowed":true') || !body.includes('"patch":"')) {
        return `not an allowed, patched review: ${body.slice(0, 200)}`;
      }
      return undefined;
    },
  };
}

const failures: string[] = [];
const small = reviewFixture(10, "3KB");
const large = reviewFixture(10, "100KB");

console.log(
  `bench:webhook${smoke ? " (smoke)" : ""}: ${entry}; webhook on CPU ${pinned ? webhookCpu : "any"}, driver on CPU ${driverPinned ? driverCpu : "any"}; ${describeLoad()}`,
);

// 1. Cold starts.
interface StartRow {
  trial: number;
  listeningMs: number | undefined;
  readyMs: number;
  exitCode: number | null;
}
const startRows: StartRow[] = [];
for (let trial = 1; trial <= starts; trial++) {
  const webhook = await startWebhook(launch);
  const exitCode = await webhook.stop();
  if (exitCode !== 0)
    failures.push(`cold start ${trial}: exit code ${String(exitCode)} after SIGTERM`);
  startRows.push({ trial, listeningMs: webhook.listeningMs, readyMs: webhook.readyMs, exitCode });
}
const readySorted = startRows.map((r) => r.readyMs).sort((a, b) => a - b);
const readyMedianMs = readySorted[Math.floor((readySorted.length - 1) / 2)] ?? Number.NaN;
console.log(`\nStart to ready (spawn → first 200 on /readyz), ${describeLoad()}`);
console.log(
  markdownTable(
    ["trial", "spawn → listening log ms", "spawn → ready ms"],
    startRows.map((r) => [r.trial, round(r.listeningMs ?? Number.NaN), round(r.readyMs)]),
  ),
);
console.log(
  `median ${round(readyMedianMs)} ms, min ${round(readySorted[0] ?? Number.NaN)} ms, max ${round(readySorted.at(-1) ?? Number.NaN)} ms`,
);

// 2 and 3. Load against one long-running webhook.
interface LoadRow {
  phase: string;
  pod: string;
  offeredPerSecond: number | "max";
  result: PhaseResult;
  webhookCpuMs: number;
  /** Share of the phase the webhook's JavaScript thread was runnable but waiting for a CPU. */
  runQueueWaitPercent: number;
  /** The same for this driver: when high, sending was delayed too (and charged to the webhook). */
  driverRunQueueWaitPercent: number;
  cpuUsPerReview: number;
  reviewsPerCpuSecond: number;
  peakRssMiB: number;
  peakAnonMiB: number;
  load1m: number;
}
const loadRows: LoadRow[] = [];
const webhook: RunningWebhook = await startWebhook(launch);
const idle = readMemory(webhook.pid);
const sampler = new RssSampler(webhook.pid);
const agent = keepAliveAgent(MAX_CONNECTIONS);
let peakRssKiB = 0;
let peakAnonKiB = 0;
let hwmKiB = 0;

async function phase(
  name: string,
  fixture: ReviewFixture,
  offered: number | "max",
  run: (source: ReviewSource) => Promise<PhaseResult>,
): Promise<void> {
  const source = sourceFor(fixture);
  sampler.take();
  const cpuBefore = readCpuMs(webhook.pid);
  const waitBefore = readRunQueueWaitMs(webhook.pid);
  const driverWaitBefore = readRunQueueWaitMs(process.pid);
  const result = await run(source);
  const webhookCpuMs = readCpuMs(webhook.pid) - cpuBefore;
  const waitMs = readRunQueueWaitMs(webhook.pid) - waitBefore;
  const driverWaitMs = readRunQueueWaitMs(process.pid) - driverWaitBefore;
  const peak = sampler.take();
  peakRssKiB = Math.max(peakRssKiB, peak.rssKiB);
  peakAnonKiB = Math.max(peakAnonKiB, peak.anonKiB);
  if (result.errors > 0) {
    failures.push(
      `${name}: ${result.errors} failed reviews, e.g. ${result.errorSamples.join("; ")}`,
    );
  }
  if (result.completed === 0) failures.push(`${name}: no review answered`);
  const perReview = result.completed > 0 ? webhookCpuMs / result.completed : Number.NaN;
  loadRows.push({
    phase: name,
    pod: fixture.name,
    offeredPerSecond: offered,
    result,
    webhookCpuMs,
    runQueueWaitPercent: (100 * waitMs) / result.durationMs,
    driverRunQueueWaitPercent: (100 * driverWaitMs) / result.durationMs,
    cpuUsPerReview: perReview * 1000,
    reviewsPerCpuSecond: 1000 / perReview,
    peakRssMiB: peak.rssKiB / 1024,
    peakAnonMiB: peak.anonKiB / 1024,
    load1m: loadAverage()[0],
  });
}

try {
  // Warm-up (JIT, TLS sessions, pools); recorded so its errors count, left out of the table.
  await phase("warm-up", small, "max", (s) =>
    closedLoop(webhook.target, s, {
      agent,
      connections: WARM_CONNECTIONS,
      durationMs: smoke ? 300 : 3000,
    }),
  );
  loadRows.pop();
  for (const rate of rates) {
    await phase(`fixed ${rate}/s`, small, rate, (s) =>
      fixedRate(webhook.target, s, {
        agent,
        rate,
        durationMs: phaseMs,
        maxConnections: MAX_CONNECTIONS,
      }),
    );
  }
  for (const fixture of [small, large]) {
    await phase(`max (${connections} connections)`, fixture, "max", (s) =>
      closedLoop(webhook.target, s, { agent, connections, durationMs: phaseMs }),
    );
  }
  hwmKiB = readMemory(webhook.pid).hwmKiB;
} finally {
  sampler.stop();
  agent.destroy();
  const code = await webhook.stop();
  if (code !== 0)
    failures.push(`load webhook: exit code ${String(code)} after SIGTERM\n${webhook.stderr()}`);
  rmSync(dir, { recursive: true, force: true });
}

console.log(`\nHTTPS load (keep-alive; latency from when each review was due), ${describeLoad()}`);
const ms = (n: number): number => round(n);
console.log(
  markdownTable(
    [
      "phase",
      "pod",
      "offered/s",
      "answered/s",
      "p50 ms",
      "p99 ms",
      "p99.9 ms",
      "max ms",
      "errors",
      "webhook CPU µs/review",
      "reviews per CPU-s",
      "webhook waiting for CPU %",
      "peak RSS MiB",
      "peak anon MiB",
      "driver CPU %",
      "driver stall ms",
      "driver waiting for CPU %",
      "new conns",
      "load 1m",
    ],
    loadRows.map((r) => [
      r.phase,
      r.pod,
      r.offeredPerSecond === "max"
        ? "max"
        : r.result.saturated
          ? `${r.offeredPerSecond} (cut short: saturated)`
          : r.offeredPerSecond,
      Math.round(r.result.ratePerSecond),
      ms(r.result.latency.p50Ms),
      ms(r.result.latency.p99Ms),
      ms(r.result.latency.p999Ms),
      ms(r.result.latency.maxMs),
      r.result.errors,
      Math.round(r.cpuUsPerReview),
      Math.round(r.reviewsPerCpuSecond),
      Math.round(r.runQueueWaitPercent),
      round(r.peakRssMiB),
      round(r.peakAnonMiB),
      Math.round((100 * r.result.driverCpuMs) / r.result.durationMs),
      round(r.result.driverStallMaxMs),
      Math.round(r.driverRunQueueWaitPercent),
      r.result.connectionsOpened,
      r.load1m,
    ]),
  ),
);

const at1000 = loadRows.find((r) => r.offeredPerSecond === 1000);
const maxSmall = loadRows.find((r) => r.offeredPerSecond === "max" && r.pod === small.name);
const goals = [
  {
    goal: "cold start to ready (median)",
    target: `≤ ${GOALS.coldStartMs} ms`,
    value: readyMedianMs,
    unit: "ms",
    met: readyMedianMs <= GOALS.coldStartMs,
  },
  {
    goal: "sustained reviews/s, 3 KB pod",
    target: `≥ ${GOALS.reviewsPerSecond}/s`,
    value: maxSmall?.result.ratePerSecond ?? Number.NaN,
    unit: "/s",
    met: (maxSmall?.result.ratePerSecond ?? 0) >= GOALS.reviewsPerSecond,
  },
  {
    goal: "p99 at 1,000 reviews/s",
    target: `< ${GOALS.p99At1000Ms} ms`,
    value: at1000?.result.latency.p99Ms ?? Number.NaN,
    unit: "ms",
    met: (at1000?.result.latency.p99Ms ?? Infinity) < GOALS.p99At1000Ms,
  },
  {
    goal: "peak RSS under load",
    target: `≤ ${GOALS.rssMiB} MiB`,
    value: peakRssKiB / 1024,
    unit: "MiB",
    met: peakRssKiB / 1024 <= GOALS.rssMiB,
  },
];
console.log(`\nGoals (issue 9), ${describeLoad()}`);
console.log(
  markdownTable(
    ["goal", "target", "measured", "met"],
    goals.map((g) => [g.goal, g.target, `${round(g.value)} ${g.unit}`, g.met ? "yes" : "NO"]),
  ),
);
console.log(
  `idle after start: RSS ${round(idle.rssKiB / 1024)} MiB (anonymous ${round(idle.anonKiB / 1024)} MiB); under load: peak RSS ${round(peakRssKiB / 1024)} MiB (anonymous ${round(peakAnonKiB / 1024)} MiB), kernel high-water mark (VmHWM) ${round(hwmKiB / 1024)} MiB`,
);

const file = report.write({
  entry,
  pinned: { webhookCpu: pinned ? webhookCpu : null, driverCpu: driverPinned ? driverCpu : null },
  settings: {
    maxConnections: MAX_CONNECTIONS,
    warmConnections: WARM_CONNECTIONS,
    phaseMs,
    rates,
    connections,
    starts,
    nodeFlags,
    logLevel: "info",
    nodeEnv: "production",
  },
  fixtures: [small, large].map((f) => ({
    name: f.name,
    podBytes: f.podBytes,
    reviewBytes: f.reviewBytes,
  })),
  coldStarts: startRows,
  coldStartMedianMs: readyMedianMs,
  idleRssMiB: idle.rssKiB / 1024,
  idleAnonMiB: idle.anonKiB / 1024,
  peakRssMiB: peakRssKiB / 1024,
  peakAnonMiB: peakAnonKiB / 1024,
  vmHwmMiB: hwmKiB / 1024,
  phases: loadRows,
  goals,
  failures,
});
console.log(`wrote ${file}`);
if (failures.length > 0) {
  console.error(`bench:webhook FAILED:\n- ${failures.join("\n- ")}`);
  process.exitCode = 1;
}
