// Runs the agent containers of an injected pod "as the API server stored them": the container is
// read back from the API server and run as the image would run it (`node /app/main.mjs <args>`,
// this run's bundle bind-mounted read-only at /app), with exactly its env (fieldRefs resolved like the kubelet)
// plus PATH, as its runAsUser/runAsGroup with the pod's fsGroup and supplementalGroups, in a private
// mount namespace where the pod's volumes appear at the container's mount paths and the root
// filesystem is read-only (readOnlyRootFilesystem). Volumes live on tmpfs under /dev/shm, like the
// kubelet's memory-backed emptyDirs and projected volumes; tokens come from the TokenRequest API.
import { chmodSync, chownSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { bundleDir } from "../global-setup.js";
import { applyChart, renderChart, writePolicyFile } from "./chart.js";
import type { Cluster } from "./cluster.js";
import {
  freePort,
  makeTempDir,
  spawnManaged,
  tail,
  waitFor,
  type ExitInfo,
  type ManagedProcess,
} from "./processes.js";
import { startWebhook, type Webhook } from "./webhook.js";
import { imageRuntime, nodeBinMount } from "./image.js";

/** The agent image's entrypoint, env and user, read from Dockerfile.agent. */
const IMAGE = imageRuntime("agent");
/** Where the image has the agent (its WORKDIR); this run's bundle is bind-mounted there. */
const APP_DIR = IMAGE.workdir;
/** This run's copy of the agent bundle (the global setup's snapshot of build/agent). */
export function agentBundleDir(): string {
  return join(bundleDir(), "agent");
}
/** The API server's default audience (its --service-account-issuer). */
const DEFAULT_AUDIENCE = "https://kubernetes.default.svc.cluster.local";

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } } & Record<string, unknown>;
}
export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
  subPath?: string;
}
export interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  volumeMounts?: VolumeMount[];
  restartPolicy?: string;
  securityContext?: {
    runAsUser?: number;
    runAsGroup?: number;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
  };
}
interface KeyToPath {
  key: string;
  path: string;
}
export interface Volume {
  name: string;
  emptyDir?: { medium?: string; sizeLimit?: string };
  projected?: {
    sources: {
      serviceAccountToken?: { audience?: string; expirationSeconds?: number; path: string };
      configMap?: { name: string; items?: KeyToPath[] };
      downwardAPI?: { items: { path: string; fieldRef: { fieldPath: string } }[] };
    }[];
  };
  configMap?: { name: string; items?: KeyToPath[] };
  secret?: { secretName: string; items?: KeyToPath[] };
}
export interface Pod {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: {
    serviceAccountName?: string;
    nodeName?: string;
    securityContext?: {
      runAsUser?: number;
      runAsGroup?: number;
      fsGroup?: number;
      supplementalGroups?: number[];
    };
    initContainers?: Container[];
    containers: Container[];
    volumes?: Volume[];
  };
}

/** The pod's volumes on tmpfs, shared by its agent containers (init then sidecar), like a node's. */
export interface PodVolumes {
  pod: Pod;
  /** /dev/shm/dso-e2e-…/<namespace>.<pod> (0700: only reachable through the mounts). */
  root: string;
  /** Host directory of a volume by name. */
  dir(volume: string): string;
  /** Service-account tokens written into projected volumes (for leak checks). */
  tokens: string[];
  /** Removes the directories (also done at teardown). */
  remove(): void;
}

let shmRoot: string | undefined;
function runRoot(): string {
  shmRoot ??= makeTempDir("dso-e2e", "/dev/shm");
  return shmRoot;
}

let logRoot: string | undefined;
/** Agent logs go to disk on purpose: the leak scan then also proves they hold no secret. */
function logDir(): string {
  const d = process.env.DSO_E2E_LOG_DIR;
  if (d !== undefined && d !== "") {
    mkdirSync(d, { recursive: true });
    return d;
  }
  logRoot ??= makeTempDir("dso-e2e-agent-logs");
  return logRoot;
}

export async function getPod(cluster: Cluster, namespace: string, name: string): Promise<Pod> {
  return cluster.api<Pod>("GET", `/api/v1/namespaces/${namespace}/pods/${name}`);
}

export function findContainer(pod: Pod, name: string): Container {
  const c = [...(pod.spec.initContainers ?? []), ...pod.spec.containers].find(
    (x) => x.name === name,
  );
  if (c === undefined) {
    const names = [...(pod.spec.initContainers ?? []), ...pod.spec.containers].map((x) => x.name);
    throw new Error(
      `pod ${pod.metadata.namespace}/${pod.metadata.name} has no container ${name} (it has: ${names.join(", ")})`,
    );
  }
  return c;
}

/** The UID every agent container of the pod runs as (they share one, so files stay the sidecar's). */
function agentUid(pod: Pod): { uid: number; gid: number } {
  const c = pod.spec.initContainers?.find(
    (x) => x.name === "dso-agent-init" || x.name === "dso-agent",
  );
  const uid = c?.securityContext?.runAsUser ?? pod.spec.securityContext?.runAsUser ?? 0;
  const gid = c?.securityContext?.runAsGroup ?? pod.spec.securityContext?.runAsGroup ?? 0;
  return { uid, gid };
}

function writeItems(
  dir: string,
  data: Record<string, string>,
  items: KeyToPath[] | undefined,
  what: string,
): void {
  const list = items ?? Object.keys(data).map((k) => ({ key: k, path: k }));
  for (const it of list) {
    const v = data[it.key];
    if (v === undefined) throw new Error(`${what} has no key ${it.key}`);
    const file = join(dir, it.path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, v, { mode: 0o644 });
  }
}

/**
 * Materialises the pod's volumes the way the kubelet would: emptyDirs (0777, or group fsGroup with
 * setgid), projected service-account tokens from TokenRequest (bound to the pod, the volume's
 * audience and expiry; 0600 owned by the agent's UID), ConfigMap and Secret volumes from the API.
 */
export async function preparePodVolumes(cluster: Cluster, pod: Pod): Promise<PodVolumes> {
  const root = join(runRoot(), `${pod.metadata.namespace}.${pod.metadata.name}`);
  mkdirSync(root, { mode: 0o700 });
  const dirs = new Map<string, string>();
  const tokens: string[] = [];
  const fsGroup = pod.spec.securityContext?.fsGroup;
  const { uid, gid } = agentUid(pod);
  const ns = pod.metadata.namespace;
  // Only what the agent containers mount (the app's kube-api-access volume etc. are not needed).
  const agentVolumes = new Set(
    (pod.spec.initContainers ?? [])
      .filter((c) => c.name === "dso-agent-init" || c.name === "dso-agent")
      .flatMap((c) => (c.volumeMounts ?? []).map((m) => m.name)),
  );
  for (const v of pod.spec.volumes ?? []) {
    if (!agentVolumes.has(v.name)) continue;
    const dir = join(root, v.name);
    mkdirSync(dir);
    dirs.set(v.name, dir);
    if (v.emptyDir !== undefined) {
      if (fsGroup !== undefined) {
        chownSync(dir, 0, fsGroup);
        chmodSync(dir, 0o2777);
      } else {
        chmodSync(dir, 0o777);
      }
    } else if (v.projected !== undefined) {
      chmodSync(dir, 0o755);
      for (const src of v.projected.sources) {
        if (src.serviceAccountToken !== undefined) {
          const t = src.serviceAccountToken;
          const token = await cluster.requestToken(
            ns,
            pod.spec.serviceAccountName ?? "default",
            t.audience ?? DEFAULT_AUDIENCE,
            t.expirationSeconds ?? 3600,
            { name: pod.metadata.name, uid: pod.metadata.uid },
          );
          tokens.push(token);
          const file = join(dir, t.path);
          writeFileSync(file, token, { mode: 0o600 });
          chownSync(file, uid, fsGroup ?? gid);
        } else if (src.configMap !== undefined) {
          const cm = await cluster.api<{ data?: Record<string, string> }>(
            "GET",
            `/api/v1/namespaces/${ns}/configmaps/${src.configMap.name}`,
          );
          writeItems(
            dir,
            cm.data ?? {},
            src.configMap.items,
            `ConfigMap ${ns}/${src.configMap.name}`,
          );
        } else if (src.downwardAPI !== undefined) {
          for (const item of src.downwardAPI.items) {
            writeFileSync(join(dir, item.path), fieldValue(pod, item.fieldRef.fieldPath), {
              mode: 0o644,
            });
          }
        } else {
          throw new Error(
            `agent-runner: unsupported projected source in volume ${v.name}: ${JSON.stringify(src)}`,
          );
        }
      }
    } else if (v.configMap !== undefined) {
      chmodSync(dir, 0o755);
      const cm = await cluster.api<{ data?: Record<string, string> }>(
        "GET",
        `/api/v1/namespaces/${ns}/configmaps/${v.configMap.name}`,
      );
      writeItems(dir, cm.data ?? {}, v.configMap.items, `ConfigMap ${ns}/${v.configMap.name}`);
    } else if (v.secret !== undefined) {
      chmodSync(dir, 0o755);
      const s = await cluster.api<{ data?: Record<string, string> }>(
        "GET",
        `/api/v1/namespaces/${ns}/secrets/${v.secret.secretName}`,
      );
      const decoded = Object.fromEntries(
        Object.entries(s.data ?? {}).map(([k, b]) => [
          k,
          Buffer.from(b, "base64").toString("utf8"),
        ]),
      );
      writeItems(dir, decoded, v.secret.items, `Secret ${ns}/${v.secret.secretName}`);
    } else {
      // Volumes of application containers (hostPath, PVCs, …) are not needed to run the agent.
      continue;
    }
  }
  return {
    pod,
    root,
    dir(volume) {
      const d = dirs.get(volume);
      if (d === undefined) throw new Error(`pod ${pod.metadata.name} has no volume ${volume}`);
      return d;
    },
    tokens,
    remove() {
      rmSync(root, { recursive: true, force: true });
    },
  };
}

function fieldValue(pod: Pod, path: string): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m !== null)
    return (m[1] === "labels" ? pod.metadata.labels : pod.metadata.annotations)?.[m[2] ?? ""] ?? "";
  switch (path) {
    case "metadata.name":
      return pod.metadata.name;
    case "metadata.namespace":
      return pod.metadata.namespace;
    case "metadata.uid":
      return pod.metadata.uid;
    case "spec.serviceAccountName":
      return pod.spec.serviceAccountName ?? "default";
    case "spec.nodeName":
      return pod.spec.nodeName ?? "e2e-node";
    case "status.podIP":
    case "status.hostIP":
      return "127.0.0.1";
    default:
      throw new Error(`agent-runner: unsupported fieldRef ${path}`);
  }
}

/** The container's environment as the kubelet would set it (literal values and downward-API fieldRefs). */
export function containerEnv(pod: Pod, c: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef !== undefined)
      env[e.name] = fieldValue(pod, e.valueFrom.fieldRef.fieldPath);
    else if (e.valueFrom !== undefined)
      throw new Error(`agent-runner: unsupported env source for ${e.name}`);
    else env[e.name] = "";
  }
  return env;
}

function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface AgentProcess extends ManagedProcess {
  container: Container;
  /** The environment the process was given (for checks; holds references, never values). */
  env: Record<string, string>;
  logFile: string;
}

export interface RunAgentOptions {
  /**
   * Variables the test adds to the container's env. The only use is DSO_INIT_TIMEOUT (shorter init
   * deadline): no annotation or policy field sets it, so it is the one deviation from the pod spec.
   */
  extraEnv?: Record<string, string>;
  /** Suffix for the process name and log file (e.g. "restart-2"). */
  tag?: string;
}

/** Starts one agent container of the pod (by name) as described in the file header. */
export function runAgentContainer(
  vols: PodVolumes,
  containerName: string,
  opts: RunAgentOptions = {},
): AgentProcess {
  const pod = vols.pod;
  const c = findContainer(pod, containerName);
  if (c.command !== undefined) {
    throw new Error(
      `${containerName} sets command ${JSON.stringify(c.command)}; the webhook must only set args`,
    );
  }
  const podSc = pod.spec.securityContext ?? {};
  const uid = c.securityContext?.runAsUser ?? podSc.runAsUser ?? IMAGE.uid;
  const gid = c.securityContext?.runAsGroup ?? podSc.runAsGroup ?? uid;
  if (uid === 0) throw new Error(`${containerName} would run as root (runAsUser ${String(uid)})`);
  const groups = [
    ...new Set([
      gid,
      ...(podSc.fsGroup !== undefined ? [podSc.fsGroup] : []),
      ...(podSc.supplementalGroups ?? []),
    ]),
  ];

  const lines = ["set -e"];
  const mounts = c.volumeMounts ?? [];
  const node = nodeBinMount();
  for (const m of [...mounts.map((x) => x.mountPath), APP_DIR, node.target])
    lines.push(`mkdir -p ${sq(m)}`);
  if (c.securityContext?.readOnlyRootFilesystem === true) lines.push("mount -o remount,bind,ro /");
  lines.push(
    `mount --bind ${sq(agentBundleDir())} ${APP_DIR}`,
    `mount -o remount,bind,ro ${APP_DIR}`,
    `mount --bind ${sq(node.source)} ${sq(node.target)}`,
    `mount -o remount,bind,ro ${sq(node.target)}`,
  );
  for (const m of mounts) {
    if (m.subPath !== undefined)
      throw new Error(`agent-runner: subPath mounts are not supported (${m.name})`);
    lines.push(`mount --bind ${sq(vols.dir(m.name))} ${sq(m.mountPath)}`);
    if (m.readOnly === true) lines.push(`mount -o remount,bind,ro ${sq(m.mountPath)}`);
  }
  const priv = [
    "setpriv",
    `--reuid=${uid}`,
    `--regid=${gid}`,
    groups.length > 0 ? `--groups=${groups.join(",")}` : "--clear-groups",
    "--bounding-set=-all",
    "--inh-caps=-all",
    ...(c.securityContext?.allowPrivilegeEscalation === false ? ["--no-new-privs"] : []),
    "--",
    ...IMAGE.entrypoint,
    ...(c.args ?? []),
  ];
  lines.push(`cd ${APP_DIR}`);
  lines.push(`exec ${priv.map(sq).join(" ")}`);

  const env = {
    ...IMAGE.env,
    ...containerEnv(pod, c),
    ...opts.extraEnv,
    PATH: "/usr/local/bin:/usr/bin:/bin",
  };
  const name = `${pod.metadata.name}.${containerName}${opts.tag !== undefined ? `.${opts.tag}` : ""}`;
  const logFile = join(logDir(), `${name}.log`);
  // unshare and sh exec, so the managed pid ends up being the agent's node process itself.
  const proc = spawnManaged(
    name,
    "unshare",
    ["-m", "--propagation", "private", "sh", "-c", lines.join("\n")],
    {
      env,
      logFile,
    },
  );
  return Object.assign(proc, { container: c, env, logFile });
}

/** Runs a container that should exit (the init container) and waits for it, bounded. */
export async function runToExit(
  vols: PodVolumes,
  containerName: string,
  timeoutMs: number,
  opts: RunAgentOptions = {},
): Promise<{ exit: ExitInfo; logs: string; proc: AgentProcess; ms: number }> {
  const started = Date.now();
  const proc = runAgentContainer(vols, containerName, opts);
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([
    proc.exited,
    new Promise<undefined>((r) => {
      timer = setTimeout(() => {
        r(undefined);
      }, timeoutMs);
    }),
  ]).finally(() => {
    clearTimeout(timer);
  });
  if (exit === undefined) {
    await proc.stop(1_000);
    throw new Error(`${proc.name} did not exit within ${timeoutMs} ms\n${tail(proc.logs())}`);
  }
  return { exit, logs: proc.logs(), proc, ms: Date.now() - started };
}

/** Waits for the sidecar's telemetry endpoint (127.0.0.1:<telemetryPort>/healthz) to answer at all. */
export async function sidecarHealth(port: number): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5_000) });
  return { status: r.status, body: await r.text() };
}

export async function waitHealth(
  port: number,
  want: (h: { status: number; body: string }) => boolean,
  what: string,
  timeoutMs: number,
  procs: ManagedProcess[],
): Promise<{ status: number; body: string }> {
  return waitFor(
    async () => {
      const h = await sidecarHealth(port);
      return want(h) ? h : undefined;
    },
    { timeoutMs, what, processes: procs },
  );
}

export interface InjectionStack {
  webhook: Webhook;
  policyFile: string;
  /** The sidecar's telemetry port (policy agent.telemetryPort), free on this machine. */
  telemetryPort: number;
}

/**
 * The webhook as a local process with the chart's MutatingWebhookConfiguration (URL client config,
 * caBundle) and the chart's rendered policy, with `agent` merged into policy.agent.
 */
export async function startInjection(
  cluster: Cluster,
  agent: Record<string, unknown> = {},
): Promise<InjectionStack> {
  const [port, telemetryPort] = [await freePort(), await freePort()];
  if (cluster.pki === undefined)
    throw new Error(
      "startInjection needs the suite's own cluster (its CA signs the webhook certificate)",
    );
  const chart = await renderChart({
    set: {
      "webhook.url": `https://127.0.0.1:${port}/mutate`,
      "webhook.caBundle": Buffer.from(cluster.pki.caPem, "utf8").toString("base64"),
    },
    setJson: { "policy.agent": { telemetryPort, ...agent } },
  });
  const policyFile = writePolicyFile(chart);
  const webhook = await startWebhook(cluster, { port, policyFile });
  await applyChart(cluster, chart, ["MutatingWebhookConfiguration"]);
  return { webhook, policyFile, telemetryPort };
}

/** Creates a namespace and service accounts (idempotent). */
export async function ensureNamespace(
  cluster: Cluster,
  ns: string,
  serviceAccounts: string[],
): Promise<void> {
  for (const args of [
    ["create", "namespace", ns],
    ...serviceAccounts.map((sa) => ["create", "serviceaccount", sa, "-n", ns]),
  ]) {
    const r = await cluster.kubectl(args);
    if (r.code !== 0 && !r.stderr.includes("AlreadyExists"))
      throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  }
}

/**
 * Creates the pod through the API server (admission runs: our webhook mutates it) and returns it
 * as stored. The MutatingWebhookConfiguration is picked up asynchronously, so the first creation
 * is retried until the pod comes back injected (bounded).
 */
export async function createInjectedPod(cluster: Cluster, pod: unknown): Promise<Pod> {
  const p = pod as Pod;
  return waitFor(
    async () => {
      const r = await cluster.kubectl(["create", "-f", "-", "-o", "json"], {
        input: JSON.stringify(pod),
      });
      if (r.code !== 0) throw new Error(r.stderr.trim());
      const created = JSON.parse(r.stdout) as Pod;
      if (created.metadata.annotations?.["dso.io/injected"] === "true") return created;
      await cluster.kubectl([
        "delete",
        "pod",
        p.metadata.name,
        "-n",
        p.metadata.namespace,
        "--wait=false",
      ]);
      throw new Error(
        "the pod was created without injection (webhook configuration not active yet?)",
      );
    },
    {
      timeoutMs: 20_000,
      intervalMs: 1_000,
      what: `pod ${p.metadata.namespace}/${p.metadata.name} to be created injected`,
    },
  );
}
