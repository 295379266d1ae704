/**
 * bench:agent: the agent as the image runs it (`node main.mjs`, the esbuild bundle), against a
 * local OpenBao on loopback (dev mode, KV v2), AppRole auth (see agent-env.ts for why).
 *
 * 1. Init cold start: spawn → every file written and exit 0, for 1, 10 and 50 secrets (one KV v2
 *    path each), N runs each, interleaved; beside it Node's own start (`node -e 0`) and the bundle
 *    loading alone (`main.mjs --help`), which bound it from below.
 * 2. Sidecar steady state, 10 secrets refreshed every second (the lowest refreshSeconds the
 *    AgentConfig allows): RSS and anonymous memory from /proc/<pid>/smaps_rollup, CPU time per
 *    refresh of the 10 secrets (utime+stime delta / refreshes, refreshes counted at a proxy in
 *    front of OpenBao), and over `--cycles` refreshes: the anonymous-memory trend of that
 *    process and, in a second identical sidecar started with `--inspect`, the V8 heap after a
 *    forced full GC (a leak survives a full GC).
 * Azure (Lowkey Vault) is not obtainable on this machine: no Azure figures.
 */
import { performance } from "node:perf_hooks";
import { spawnSync } from "node:child_process";
import { createPki } from "../../test/e2e/harness/pki.js";
import { freePort, makeTempDir } from "../../test/e2e/harness/processes.js";
import { summarize } from "../lib/https-driver.js";
import { InspectorSession } from "../lib/inspector-heap.js";
import { describeLoad, loadAverage } from "../lib/machine.js";
import { benchArgs } from "../lib/options.js";
import { runBench } from "./run-bench.js";
import { readCpuMs } from "../lib/proc-stats.js";
import { markdownTable, round, startReport } from "../lib/report.js";
import { MiB, readSmapsRollup, type SmapsRollup } from "../lib/smaps.js";
import { startVaultProxy, type VaultProxy } from "../lib/vault-proxy.js";
import {
  agentConfig,
  filesProblem,
  podDirs,
  prepareAgentBundle,
  spawnAgent,
  startBenchVault,
  type AgentRun,
  type SecretEntry,
} from "./agent-env.js";

const GOALS = { initMs10: 300, anonMiB: 24, rssMiB: 56, cpuMsPerRefresh: 5 };
const COUNTS = [1, 10, 50];
const SIDECAR_SECRETS = 10;

const { smoke, values } = benchArgs({
  runs: { type: "string", default: "15" },
  cycles: { type: "string", default: "1000" },
  // For experiments with V8 flags on the sidecars (e.g. "--max-semi-space-size=1"); in the JSON.
  "node-flags": { type: "string", default: "" },
  // Sidecars talk HTTPS to the proxy (as to a real Vault) instead of plain HTTP.
  tls: { type: "boolean", default: false },
});
const tls = values.tls === true;
const nodeFlags = String(values["node-flags"])
  .split(" ")
  .filter((f) => f !== "");
const runs = smoke ? 1 : Number(values.runs);
const cycles = smoke ? 3 : Number(values.cycles);
const warmCycles = smoke ? 2 : 10;
if (!Number.isInteger(runs) || runs < 0 || !Number.isInteger(cycles) || cycles <= 0) {
  throw new Error("--runs takes an integer ≥ 0 (0 skips the cold starts), --cycles a positive one");
}

const failures: string[] = [];
const report = startReport("agent", smoke);
console.log(`bench:agent${smoke ? " (smoke)" : ""}: ${describeLoad()}`);

async function main(): Promise<Record<string, unknown>> {
  const agentMain = prepareAgentBundle();
  const vault = await startBenchVault();
  const secrets = await vault.putSecrets("s", Math.max(...COUNTS));
  const root = makeTempDir("dso-bench-agent", "/dev/shm");
  const entries = (n: number): SecretEntry[] =>
    Array.from({ length: n }, (_, i) => ({
      file: `s${i}`,
      path: `secret/data/bench/s${i}`,
      key: "password",
    }));
  const expected = (n: number): Map<string, string> =>
    new Map(
      entries(n).map((e) => [e.file, secrets.get(e.path)?.password ?? ""] as [string, string]),
    );

  // 1. Cold starts.
  const floorRuns = smoke ? 1 : 10;
  const nodeOnly: number[] = [];
  const bundleOnly: number[] = [];
  for (let i = 0; i < floorRuns; i++) {
    let t = performance.now();
    spawnSync(process.execPath, ["-e", "0"], { stdio: "ignore" });
    nodeOnly.push(performance.now() - t);
    t = performance.now();
    const help = spawnSync(process.execPath, [agentMain, "--help"], {
      stdio: "ignore",
      env: { PATH: process.env.PATH, NODE_ENV: "production" },
    });
    bundleOnly.push(performance.now() - t);
    if (help.status !== 0) failures.push(`main.mjs --help exited ${String(help.status)}`);
  }
  const coldMs = new Map<number, number[]>(COUNTS.map((n) => [n, []]));
  const loadBefore = loadAverage();
  // One unmeasured run first: the page cache and OpenBao's first AppRole login.
  for (let r = runs === 0 ? 0 : -1; r < runs; r++) {
    for (const n of COUNTS) {
      const dirs = podDirs(root, `cold-${n}-${r + 1}`);
      const config = agentConfig({
        vault,
        address: vault.bao.address,
        ...dirs,
        refreshSeconds: 60,
        secrets: entries(n),
      });
      const run = spawnAgent(agentMain, "init", config, { name: `init-${n}-${r + 1}` });
      const exit = await run.finished;
      if (exit.code !== 0) {
        failures.push(
          `init with ${n} secrets exited ${String(exit.code)}: ${run.logs().slice(-500)}`,
        );
        continue;
      }
      const problem = filesProblem(dirs.mountPath, expected(n));
      if (problem !== undefined) failures.push(`init with ${n} secrets: ${problem}`);
      if (r >= 0) coldMs.get(n)?.push(exit.ms);
    }
  }
  const loadAfter = loadAverage();
  const coldRows = COUNTS.map((n) => {
    const s = summarize(coldMs.get(n) ?? []);
    return {
      secrets: n,
      runs: s.count,
      p50Ms: s.p50Ms,
      p90Ms: s.p90Ms,
      minMs: Math.min(...(coldMs.get(n) ?? [])),
      maxMs: s.maxMs,
    };
  });
  const nodeSummary = summarize(nodeOnly);
  const bundleSummary = summarize(bundleOnly);
  console.log(
    `\nInit cold start (spawn → files written, exit 0), ${runs} runs each; load ${loadBefore.join(" ")} → ${loadAfter.join(" ")}`,
  );
  console.log(
    markdownTable(
      ["secrets", "runs", "p50 ms", "p90 ms", "min ms", "max ms", "goal"],
      coldRows.map((r) => [
        r.secrets,
        r.runs,
        round(r.p50Ms),
        round(r.p90Ms),
        round(r.minMs),
        round(r.maxMs),
        r.secrets === 10
          ? `≤ ${GOALS.initMs10} ms: ${r.p50Ms <= GOALS.initMs10 ? "yes" : "NO"}`
          : "",
      ]),
    ),
  );
  console.log(
    `floor: \`node -e 0\` p50 ${round(nodeSummary.p50Ms)} ms; \`node main.mjs --help\` (bundle loaded, nothing fetched) p50 ${round(bundleSummary.p50Ms)} ms`,
  );

  // 2. Sidecar steady state: two identical pods, B with the inspector for heap readings.
  const entries10 = entries(SIDECAR_SECRETS);
  const startPod = async (
    name: string,
    proxy: VaultProxy,
    nodeArgs: string[],
  ): Promise<{ sidecar: AgentRun; telemetryPort: number; mountPath: string; since: number }> => {
    const dirs = podDirs(root, name);
    const telemetryPort = await freePort();
    const config = agentConfig({
      vault,
      address: proxy.address,
      ...dirs,
      refreshSeconds: 1,
      secrets: entries10,
      telemetryPort,
      ...(caFile !== undefined ? { caFile } : {}),
    });
    const init = await spawnAgent(agentMain, "init", config, { name: `${name}-init` }).finished;
    if (init.code !== 0) throw new Error(`${name}: init exited ${String(init.code)}`);
    // The init container's reads are not refreshes.
    const since = proxy.now();
    const sidecar = spawnAgent(agentMain, "sidecar", config, { name: `${name}-sidecar`, nodeArgs });
    return { sidecar, telemetryPort, mountPath: dirs.mountPath, since };
  };
  let caFile: string | undefined;
  let serving: { cert: string; key: string } | undefined;
  if (tls) {
    const pki = await createPki(makeTempDir("dso-bench-pki"));
    const leaf = await pki.issue("vault-proxy", {
      subject: "/CN=127.0.0.1",
      usage: "server",
      sans: ["IP:127.0.0.1"],
    });
    caFile = pki.caCert;
    serving = { cert: leaf.certPem, key: leaf.keyPem };
  }
  const proxyOptions = serving !== undefined ? { tls: serving } : {};
  const [proxyA, proxyB] = await Promise.all([
    startVaultProxy(vault.bao.address, proxyOptions),
    startVaultProxy(vault.bao.address, proxyOptions),
  ]);
  const inspectPort = await freePort();
  const a = await startPod("steady-a", proxyA, nodeFlags);
  const b = await startPod("steady-b", proxyB, [
    ...nodeFlags,
    `--inspect=127.0.0.1:${inspectPort}`,
  ]);
  const refreshesOf = (p: VaultProxy, since = 0): number => p.counts(since).read / SIDECAR_SECRETS;
  const waitRefreshes = async (p: VaultProxy, n: number, since: number, proc: AgentRun) => {
    while (refreshesOf(p, since) < n) {
      if (proc.hasExited()) throw new Error(`${proc.name} exited: ${proc.logs().slice(-500)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  await waitRefreshes(proxyA, warmCycles, a.since, a.sidecar);
  await waitRefreshes(proxyB, warmCycles, b.since, b.sidecar);
  const inspector = await InspectorSession.connect(inspectPort);
  const t0 = proxyA.now();
  const t0B = proxyB.now();
  const cpu0 = readCpuMs(a.sidecar.pid);
  const conns0 = proxyA.connections();
  const mem0 = readSmapsRollup(a.sidecar.pid);
  const heap0 = await inspector.heapAfterGc();
  interface Sample {
    refreshes: number;
    rssMiB: number;
    anonMiB: number;
    heapUsedMiB?: number;
  }
  const samples: Sample[] = [
    {
      refreshes: 0,
      rssMiB: MiB(mem0.rssKiB),
      anonMiB: MiB(mem0.anonKiB),
      heapUsedMiB: heap0.usedBytes / 2 ** 20,
    },
  ];
  let peak: SmapsRollup = mem0;
  const every = Math.max(1, Math.round(cycles / 10));
  let nextHeapAt = every;
  console.log(
    `\nSidecar: ${cycles} refresh cycles of ${SIDECAR_SECRETS} secrets at refreshSeconds 1 (~${Math.round(cycles * 1.02)} s)…`,
  );
  while (refreshesOf(proxyA, t0) < cycles) {
    if (a.sidecar.hasExited() || b.sidecar.hasExited())
      throw new Error("a sidecar exited during the run");
    await new Promise((r) => setTimeout(r, 1000));
    const m = readSmapsRollup(a.sidecar.pid);
    if (m.anonKiB > peak.anonKiB) peak = { ...peak, anonKiB: m.anonKiB };
    if (m.rssKiB > peak.rssKiB) peak = { ...peak, rssKiB: m.rssKiB };
    const done = refreshesOf(proxyA, t0);
    const sample: Sample = { refreshes: done, rssMiB: MiB(m.rssKiB), anonMiB: MiB(m.anonKiB) };
    if (refreshesOf(proxyB, t0B) >= nextHeapAt) {
      sample.heapUsedMiB = (await inspector.heapAfterGc()).usedBytes / 2 ** 20;
      nextHeapAt += every;
    }
    samples.push(sample);
  }
  const cpuMs = readCpuMs(a.sidecar.pid) - cpu0;
  const doneA = refreshesOf(proxyA, t0);
  const connsA = proxyA.connections() - conns0;
  const requestsA = proxyA.events.filter((e) => e.at >= t0).length;
  const mem1 = readSmapsRollup(a.sidecar.pid);
  await waitRefreshes(proxyB, cycles, t0B, b.sidecar);
  const heap1 = await inspector.heapAfterGc();
  inspector.close();
  const health = await fetch(`http://127.0.0.1:${a.telemetryPort}/healthz`);
  if (health.status !== 200) failures.push(`sidecar /healthz answered ${health.status}`);
  const loginsA = proxyA.counts().login;
  const loginsB = proxyB.counts().login;
  if (loginsA !== 1 || loginsB !== 1) {
    failures.push(
      `expected one login per pod (init; the sidecar resumes its token), got ${loginsA} and ${loginsB}`,
    );
  }
  const problem = filesProblem(a.mountPath, expected(SIDECAR_SECRETS));
  if (problem !== undefined) failures.push(`sidecar: ${problem}`);
  for (const p of [a.sidecar, b.sidecar]) {
    const exit = await p.stop(5_000);
    if (exit.code !== 0) failures.push(`${p.name}: exit ${String(exit.code)} after SIGTERM`);
  }
  await Promise.all([proxyA.close(), proxyB.close()]);

  const cpuPerRefresh = cpuMs / doneA;
  const heapGrowthMiB = (heap1.usedBytes - heap0.usedBytes) / 2 ** 20;
  const anonGrowthMiB = MiB(mem1.anonKiB - mem0.anonKiB);
  const loadEnd = loadAverage();
  console.log(
    `\nSidecar steady state, ${SIDECAR_SECRETS} secrets, refresh every 1 s over ${tls ? "HTTPS" : "HTTP"}; load ${loadAfter.join(" ")} → ${loadEnd.join(" ")}`,
  );
  console.log(
    markdownTable(
      ["figure", "goal", "measured", "met"],
      [
        [
          "RSS at end (smaps_rollup Rss)",
          `≤ ${GOALS.rssMiB} MiB`,
          `${round(MiB(mem1.rssKiB))} MiB (peak ${round(MiB(peak.rssKiB))})`,
          MiB(peak.rssKiB) <= GOALS.rssMiB ? "yes" : "NO",
        ],
        [
          "anonymous at end (smaps_rollup Anonymous)",
          `≤ ${GOALS.anonMiB} MiB`,
          `${round(MiB(mem1.anonKiB))} MiB (peak ${round(MiB(peak.anonKiB))})`,
          MiB(peak.anonKiB) <= GOALS.anonMiB ? "yes" : "NO",
        ],
        ["PSS at end", "", `${round(MiB(mem1.pssKiB))} MiB`, ""],
        [
          "CPU per refresh of 10 secrets",
          `≤ ${GOALS.cpuMsPerRefresh} ms`,
          `${round(cpuPerRefresh)} ms (${round(cpuMs)} ms / ${round(doneA)} refreshes)`,
          cpuPerRefresh <= GOALS.cpuMsPerRefresh ? "yes" : "NO",
        ],
        [
          `V8 heap used after full GC, after ${warmCycles} → +${round(refreshesOf(proxyB, t0B))} cycles (pod B, --inspect)`,
          "no growth",
          `${round(heap0.usedBytes / 2 ** 20)} → ${round(heap1.usedBytes / 2 ** 20)} MiB (${heapGrowthMiB >= 0 ? "+" : ""}${round(heapGrowthMiB)})`,
          "",
        ],
        [
          `anonymous memory over the ${round(doneA)} cycles (pod A)`,
          "no growth",
          `${round(MiB(mem0.anonKiB))} → ${round(MiB(mem1.anonKiB))} MiB (${anonGrowthMiB >= 0 ? "+" : ""}${round(anonGrowthMiB)})`,
          "",
        ],
        [
          `connections opened to Vault (${tls ? "TLS handshakes" : "TCP"}) for ${requestsA} requests (pod A)`,
          "",
          String(connsA),
          "",
        ],
        [
          "logins per pod (init + sidecar)",
          "1",
          `${loginsA}, ${loginsB}`,
          loginsA === 1 && loginsB === 1 ? "yes" : "NO",
        ],
      ],
    ),
  );
  const heapRows = samples.filter((s) => s.heapUsedMiB !== undefined);
  console.log(`\nTrend (pod A memory; pod B heap after full GC), every ~${every} cycles`);
  console.log(
    markdownTable(
      ["cycles", "A RSS MiB", "A anon MiB", "B heap used MiB"],
      heapRows.map((s) => [
        round(s.refreshes),
        round(s.rssMiB),
        round(s.anonMiB),
        round(s.heapUsedMiB ?? Number.NaN),
      ]),
    ),
  );
  return {
    coldStart: {
      runs,
      rows: coldRows,
      samplesMs: Object.fromEntries(coldMs),
      nodeOnly: nodeSummary,
      bundleOnly: bundleSummary,
      loadBefore,
      loadAfter,
    },
    sidecar: {
      secrets: SIDECAR_SECRETS,
      refreshSeconds: 1,
      cycles: doneA,
      cpuMs,
      cpuMsPerRefresh: cpuPerRefresh,
      memoryStart: mem0,
      memoryEnd: mem1,
      memoryPeak: peak,
      heapStart: heap0,
      heapEnd: heap1,
      logins: [loginsA, loginsB],
      connectionsOpened: connsA,
      requests: requestsA,
      samples,
      loadEnd,
    },
    goals: GOALS,
    nodeFlags,
    sidecarTransport: tls ? "https (TLS 1.2+, CA file)" : "http",
    auth: "approle",
    azure: "not measured: Lowkey Vault is not obtainable on this machine",
  };
}

await runBench("agent", report, failures, main);
