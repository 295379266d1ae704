import { readdir, readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { AgentConfig, OnChangeAction } from "@dso/core";
import { errorMessage } from "./errors.js";

export const ROLLOUT_ANNOTATION = "dso.io/secrets-version";
/** Where the webhook mounts a token for the Kubernetes API (only with `rollout` or `signal`). */
export const KUBE_API_DIR = "/var/run/secrets/dso.io/kube-api";
const HTTP_TIMEOUT_MS = 5_000;

export interface OnChangeContext {
  config: AgentConfig;
  logger: Logger;
  /** Deterministic hash of the secret versions (SecretSet.versionsHash). */
  versionsHash: string;
  files: string[];
  env?: NodeJS.ProcessEnv;
  procDir?: string;
  kubeApiDir?: string;
}

/** Runs the pod's on-change action after the files changed. Failures are logged, never fatal. */
export async function runOnChange(action: OnChangeAction, ctx: OnChangeContext): Promise<void> {
  const log = ctx.logger.child({ onChange: action.kind });
  try {
    if (action.kind === "http") await postChange(action.url, ctx.files, log);
    else if (action.kind === "signal")
      await signalContainer(action.signal, action.container, ctx, log);
    else await patchOwner(ctx, log);
  } catch (err) {
    log.error({ reason: errorMessage(err) }, "on-change action failed");
  }
}

async function postChange(url: string, files: string[], log: Logger): Promise<void> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    // File names only: the application reads the values from the files.
    body: JSON.stringify({ event: "secrets-changed", files }),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  await res.body?.cancel();
  log.info({ url, status: res.status }, "notified the application");
}

interface ProcInfo {
  pid: number;
  ppid: number;
  name: string;
  cgroup: string;
}

/** Processes visible in the shared PID namespace. */
export async function listProcesses(procDir: string): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const entry of await readdir(procDir)) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = await readFile(`${procDir}/${entry}/status`, "utf8");
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? "-1");
      const name = /^Name:\s+(.*)$/m.exec(status)?.[1] ?? "";
      const cgroup = await readFile(`${procDir}/${entry}/cgroup`, "utf8").catch(() => "");
      out.push({ pid: Number(entry), ppid, name, cgroup });
    } catch {
      // The process exited while we looked.
    }
  }
  return out;
}

/**
 * Picks the main process of the target container. With a shared process namespace, every
 * container's first process has parent 0 (the runtime starts it from outside the namespace); the
 * pause process is PID 1. So candidates are processes with PPid 0 other than PID 1, `pause` and
 * this agent. With one candidate that is the target. With several, the container's ID from the
 * pod status (when the agent may read its pod) is matched against each candidate's cgroup.
 */
export function pickMainProcess(
  processes: ProcInfo[],
  selfPid: number,
  containerId: string | undefined,
): ProcInfo | undefined {
  const self = processes.find((p) => p.pid === selfPid);
  const selfCgroup = self?.cgroup;
  const candidates = processes.filter(
    (p) =>
      p.ppid === 0 &&
      p.pid !== 1 &&
      p.pid !== selfPid &&
      p.name !== "pause" &&
      (selfCgroup === undefined || selfCgroup === "" || p.cgroup !== selfCgroup),
  );
  if (containerId !== undefined) {
    const matched = candidates.filter((p) => p.cgroup.includes(containerId));
    if (matched.length === 1) return matched[0];
  }
  return candidates.length === 1 ? candidates[0] : undefined;
}

async function signalContainer(
  signal: string,
  container: string,
  ctx: OnChangeContext,
  log: Logger,
): Promise<void> {
  const procs = await listProcesses(ctx.procDir ?? "/proc");
  let containerId: string | undefined;
  const api = await kubeApi(ctx).catch(() => undefined);
  if (api !== undefined) {
    const pod = await api
      .get(`/api/v1/namespaces/${api.namespace}/pods/${api.podName}`)
      .catch(() => undefined);
    const statuses = (
      pod as
        { status?: { containerStatuses?: { name: string; containerID?: string }[] } } | undefined
    )?.status?.containerStatuses;
    containerId = statuses
      ?.find((s) => s.name === container)
      ?.containerID?.replace(/^[a-z]+:\/\//, "");
  }
  const target = pickMainProcess(procs, process.pid, containerId);
  if (target === undefined) {
    throw new Error(
      `cannot tell which process is container "${container}"'s main process (is shareProcessNamespace on?)`,
    );
  }
  process.kill(target.pid, signal);
  log.info({ container, pid: target.pid, signal }, "signalled the application");
}

interface KubeApi {
  namespace: string;
  podName: string;
  get(path: string): Promise<unknown>;
  patch(path: string, body: unknown): Promise<unknown>;
}

async function kubeApi(ctx: OnChangeContext): Promise<KubeApi> {
  const env = ctx.env ?? process.env;
  const dir = ctx.kubeApiDir ?? KUBE_API_DIR;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? "443";
  const podName = env.DSO_POD_NAME ?? ctx.config.pod?.name;
  const namespace = ctx.config.pod?.namespace;
  if (host === undefined || podName === undefined || namespace === undefined) {
    throw new Error(
      "not in a cluster: KUBERNETES_SERVICE_HOST, DSO_POD_NAME or pod.namespace unset",
    );
  }
  const token = (await readFile(`${dir}/token`, "utf8")).trim();
  const ca = await readFile(`${dir}/ca.crt`, "utf8");
  const { Agent } = await import("node:https");
  const { request } = await import("node:https");
  const agent = new Agent({ ca, minVersion: "TLSv1.2" });
  const base = `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
  const call = (method: string, path: string, body?: unknown) =>
    new Promise<unknown>((resolve, reject) => {
      const req = request(
        `${base}${path}`,
        {
          method,
          agent,
          timeout: HTTP_TIMEOUT_MS,
          headers: {
            authorization: `Bearer ${token}`,
            accept: "application/json",
            ...(body !== undefined ? { "content-type": "application/merge-patch+json" } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            if (status >= 300) {
              reject(new Error(`Kubernetes API answered HTTP ${status} for ${method} ${path}`));
              return;
            }
            try {
              resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
            } catch {
              reject(new Error(`Kubernetes API sent invalid JSON for ${method} ${path}`));
            }
          });
        },
      );
      req.on("timeout", () =>
        req.destroy(new Error(`Kubernetes API timed out on ${method} ${path}`)),
      );
      req.on("error", reject);
      if (body !== undefined) req.write(JSON.stringify(body));
      req.end();
    });
  return {
    namespace,
    podName,
    get: (path) => call("GET", path),
    patch: (path, body) => call("PATCH", path, body),
  };
}

interface OwnerRef {
  kind: string;
  name: string;
  controller?: boolean;
}

function controllerOf(obj: unknown): OwnerRef | undefined {
  const refs = (obj as { metadata?: { ownerReferences?: OwnerRef[] } }).metadata?.ownerReferences;
  return refs?.find((r) => r.controller === true);
}

/** The workload that owns the pod: pod → ReplicaSet → Deployment, or a StatefulSet/DaemonSet directly. */
export async function findOwner(api: KubeApi): Promise<{ kind: string; name: string }> {
  const ns = api.namespace;
  const pod = await api.get(`/api/v1/namespaces/${ns}/pods/${api.podName}`);
  const owner = controllerOf(pod);
  if (owner === undefined) throw new Error(`pod ${ns}/${api.podName} has no controller to roll`);
  if (owner.kind === "ReplicaSet") {
    const rs = await api.get(`/apis/apps/v1/namespaces/${ns}/replicasets/${owner.name}`);
    const dep = controllerOf(rs);
    if (dep?.kind !== "Deployment")
      throw new Error(`ReplicaSet ${ns}/${owner.name} has no owning Deployment`);
    return dep;
  }
  if (owner.kind === "StatefulSet" || owner.kind === "DaemonSet") return owner;
  throw new Error(
    `pod ${ns}/${api.podName} is owned by a ${owner.kind}, which rollout does not support`,
  );
}

async function patchOwner(ctx: OnChangeContext, log: Logger): Promise<void> {
  const api = await kubeApi(ctx);
  const owner = await findOwner(api);
  const plural = `${owner.kind.toLowerCase()}s`;
  // Every replica that sees the change computes the same value; patching an equal value is a no-op,
  // so the workload rolls once.
  await api.patch(`/apis/apps/v1/namespaces/${api.namespace}/${plural}/${owner.name}`, {
    spec: { template: { metadata: { annotations: { [ROLLOUT_ANNOTATION]: ctx.versionsHash } } } },
  });
  log.info(
    { kind: owner.kind, name: owner.name, version: ctx.versionsHash },
    "rolled the workload",
  );
}
