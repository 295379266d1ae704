/**
 * bench:apiserver: what the webhook adds to pod creation as users see it. A real control plane on
 * loopback (etcd, kube-apiserver v1.34, from the e2e harness) and the webhook as the image runs
 * it (`node build/webhook/main.mjs`, chart policy) registered with the chart's
 * MutatingWebhookConfiguration. Pods are created one after another with direct API POSTs
 * (`POST /api/v1/namespaces/<ns>/pods`, keep-alive HTTPS, no kubectl), timed from request to
 * response, in three phases:
 *
 * - no webhook registered: annotated pods stored as sent (the baseline);
 * - webhook registered, annotated pods: the API server calls the webhook, which injects;
 * - webhook registered, plain pods: the chart's matchConditions skip the call.
 *
 * The last two alternate, so a change in machine load hits both alike; the baseline is taken again
 * at the end, after removing the MutatingWebhookConfiguration, to show drift.
 */
import { performance } from "node:perf_hooks";
import { bundleDir, loadProvisionedEnv } from "../../test/e2e/global-setup.js";
import setup from "../../test/e2e/global-setup.js";
import { startInjection } from "../../test/e2e/harness/agent-runner.js";
import { startCluster, type Cluster } from "../../test/e2e/harness/cluster.js";
import { adoptTempDir, waitFor } from "../../test/e2e/harness/processes.js";
import { summarize, type LatencySummary } from "../lib/https-driver.js";
import { describeLoad, loadAverage } from "../lib/machine.js";
import { benchArgs } from "../lib/options.js";
import { runBench } from "./run-bench.js";
import { markdownTable, round, startReport } from "../lib/report.js";

const NS = "bench";
const { smoke, values } = benchArgs({ pods: { type: "string", default: "200" } });
const pods = smoke ? 10 : Number(values.pods);
const warmup = smoke ? 2 : 20;
if (!Number.isInteger(pods) || pods <= 0) throw new Error("--pods takes a positive integer");

const failures: string[] = [];
const report = startReport("apiserver", smoke);
console.log(`bench:apiserver${smoke ? " (smoke)" : ""}: ${describeLoad()}`);

interface PodMeta {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: { initContainers?: { name: string }[] };
}

function pod(name: string, annotated: boolean): unknown {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: NS,
      labels: { "app.kubernetes.io/name": "orders-api" },
      ...(annotated
        ? {
            annotations: {
              "dso.io/inject": "true",
              "dso.io/provider": "vault",
              "dso.io/vault-address": "https://vault.vault.svc:8200",
              "dso.io/vault-role": "orders-api",
              "dso.io/secret-password": "secret/data/orders/db#password",
              "dso.io/secret-username": "secret/data/orders/db#username",
              "dso.io/secret-db.env": "secret/data/orders/db",
              "dso.io/template-db.env": "DB_USER={{username}}\nDB_PASSWORD={{password}}\n",
            },
          }
        : {}),
    },
    spec: {
      securityContext: { runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001 },
      containers: [
        {
          name: "orders-api",
          image: "registry.example.com/orders/orders-api:1.8.2",
          ports: [{ name: "http", containerPort: 8080 }],
          resources: { requests: { cpu: "100m", memory: "128Mi" } },
        },
      ],
    },
  };
}

let seq = 0;
/** Creates one pod; returns the ms from request to response and whether it came back injected. */
async function create(
  cluster: Cluster,
  annotated: boolean,
): Promise<{ ms: number; injected: boolean }> {
  const name = `${annotated ? "annotated" : "plain"}-${seq++}`;
  const body = pod(name, annotated);
  const t = performance.now();
  const r = await cluster.apiRequest("POST", `/api/v1/namespaces/${NS}/pods`, body);
  const ms = performance.now() - t;
  if (r.status !== 201)
    throw new Error(`POST pod ${name}: HTTP ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
  const created = r.body as PodMeta;
  const injected = created.metadata.annotations?.["dso.io/injected"] === "true";
  return { ms, injected };
}

interface PhaseRow {
  phase: string;
  latency: LatencySummary;
  loadBefore: [number, number, number];
  loadAfter: [number, number, number];
}

async function main(): Promise<Record<string, unknown>> {
  Object.assign(process.env, loadProvisionedEnv());
  if (setup() !== undefined) adoptTempDir(bundleDir());
  const clusterStarted = performance.now();
  const cluster = await startCluster();
  console.log(`control plane ready in ${round((performance.now() - clusterStarted) / 1000)} s`);
  await cluster.api("POST", "/api/v1/namespaces", {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: NS },
  });
  // The ServiceAccount admission plugin refuses pods until the controller-manager made "default".
  await waitFor(() => cluster.api("GET", `/api/v1/namespaces/${NS}/serviceaccounts/default`), {
    timeoutMs: 60_000,
    what: `the default service account in ${NS}`,
    processes: cluster.processes,
  });

  const rows: PhaseRow[] = [];
  const phase = async (name: string, run: () => Promise<number[]>): Promise<void> => {
    const loadBefore = loadAverage();
    const samples = await run();
    rows.push({ phase: name, latency: summarize(samples), loadBefore, loadAfter: loadAverage() });
  };

  // Baseline: no webhook registered.
  for (let i = 0; i < warmup; i++) await create(cluster, true);
  await phase("no webhook registered (annotated pod)", async () => {
    const out: number[] = [];
    for (let i = 0; i < pods; i++) {
      const r = await create(cluster, true);
      if (r.injected) failures.push("a pod was injected before the webhook was registered");
      out.push(r.ms);
    }
    return out;
  });

  const stack = await startInjection(cluster);
  // The API server picks the configuration up asynchronously: wait until pods come back injected.
  await waitFor(async () => (await create(cluster, true)).injected, {
    timeoutMs: 30_000,
    intervalMs: 500,
    what: "pods to come back injected after registering the webhook",
    processes: [stack.webhook.process],
  });
  for (let i = 0; i < warmup; i++) {
    await create(cluster, true);
    await create(cluster, false);
  }
  const withWebhook: number[] = [];
  const skipped: number[] = [];
  const loadBefore = loadAverage();
  for (let i = 0; i < pods; i++) {
    const a = await create(cluster, true);
    if (!a.injected) failures.push(`annotated pod ${i} came back without injection`);
    withWebhook.push(a.ms);
    const p = await create(cluster, false);
    if (p.injected) failures.push(`plain pod ${i} came back injected`);
    skipped.push(p.ms);
  }
  const loadAfter = loadAverage();
  rows.push({
    phase: "webhook registered, annotated pod (injected)",
    latency: summarize(withWebhook),
    loadBefore,
    loadAfter,
  });
  rows.push({
    phase: "webhook registered, plain pod (matchConditions: not called)",
    latency: summarize(skipped),
    loadBefore,
    loadAfter,
  });

  // Baseline again, after removing the configuration: separates the webhook's cost from drift
  // (etcd and the API server's caches grow as pods are stored).
  const mwcs = await cluster.api<{ items: { metadata: { name: string } }[] }>(
    "GET",
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
  );
  for (const m of mwcs.items) {
    await cluster.api(
      "DELETE",
      `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${m.metadata.name}`,
    );
  }
  await waitFor(async () => !(await create(cluster, true)).injected, {
    timeoutMs: 30_000,
    intervalMs: 500,
    what: "pods to come back uninjected after removing the webhook configuration",
  });
  for (let i = 0; i < warmup; i++) await create(cluster, true);
  await phase("no webhook registered, again after (annotated pod)", async () => {
    const out: number[] = [];
    for (let i = 0; i < pods; i++) {
      const r = await create(cluster, true);
      if (r.injected) failures.push("a pod was injected after the webhook was removed");
      out.push(r.ms);
    }
    return out;
  });

  const base = rows[0]?.latency;
  console.log(`\nPod CREATE latency through kube-apiserver, ${pods} pods per phase, one at a time`);
  console.log(
    markdownTable(
      [
        "phase",
        "pods",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "p50 vs baseline ms",
        "p99 vs baseline ms",
        "load 1m before → after",
      ],
      rows.map((r) => [
        r.phase,
        r.latency.count,
        round(r.latency.p50Ms),
        round(r.latency.p90Ms),
        round(r.latency.p99Ms),
        round(r.latency.maxMs),
        base === undefined
          ? ""
          : `${r.latency.p50Ms - base.p50Ms >= 0 ? "+" : ""}${round(r.latency.p50Ms - base.p50Ms)}`,
        base === undefined
          ? ""
          : `${r.latency.p99Ms - base.p99Ms >= 0 ? "+" : ""}${round(r.latency.p99Ms - base.p99Ms)}`,
        `${r.loadBefore[0]} → ${r.loadAfter[0]}`,
      ]),
    ),
  );
  return { pods, warmup, rows };
}

await runBench("apiserver", report, failures, main);
