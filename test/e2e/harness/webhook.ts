// The DSO webhook as its image runs it: Dockerfile.webhook's ENTRYPOINT (`node /app/main.mjs`) with
// the image's ENV, as its numeric USER, with this run's bundle read-only at /app and a read-only
// root filesystem (harness/image-process.ts), and the chart Deployment's container: its env,
// the policy directory at /etc/dso/policy, the TLS Secret at /etc/dso/tls (read-only) and an
// in-memory /tmp. It serves on 127.0.0.1 with a certificate from the suite's CA, or in self-signed
// bootstrap mode against the cluster.
import { chmodSync, chownSync, copyFileSync, mkdirSync, statSync } from "node:fs";
import { request } from "node:https";
import { basename, dirname, join } from "node:path";
import type { Cluster } from "./cluster.js";
import { bundleDir } from "../global-setup.js";
import { imageRuntime } from "./image.js";
import { spawnImage, volumeDir, type ImageMount } from "./image-process.js";
import { createPki, type Pki } from "./pki.js";
import { freePort, makeTempDir, waitFor, type ManagedProcess } from "./processes.js";

/** The file the webhook image runs (built by the global setup with scripts/bundle.mjs). */
export function webhookMain(): string {
  return join(bundleDir(), "webhook/main.mjs");
}

export interface SelfSignedOptions {
  namespace: string;
  secretName: string;
  webhookConfigName: string;
  /**
   * The certificate names `<service>.<namespace>.svc`, ..., and `<service>` itself; the API
   * server calls a URL on this machine, so "localhost" makes the bare name a host it can reach.
   */
  serviceName?: string;
}

export interface WebhookOptions {
  policyFile?: string;
  /** Reuse a port (e.g. to restart the webhook where the MutatingWebhookConfiguration points). */
  port?: number;
  logLevel?: string;
  selfSigned?: SelfSignedOptions;
  /** Extra environment for the webhook process. */
  env?: Record<string, string>;
}

export interface Webhook {
  /** https://127.0.0.1:<port>/mutate (https://<serviceName>:<port>/mutate in self-signed mode). */
  url: string;
  /** Base64 of the PEM CA that verifies the serving certificate (as a caBundle field wants it). */
  caBundle: string;
  caPem: string;
  port: number;
  process: ManagedProcess;
  logs(): string;
  stop(): Promise<void>;
}

function get(url: string, ca: string, servername: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "GET", ca, servername, timeout: 3_000 }, (res) => {
      res.resume();
      res.on("end", () => {
        resolve(res.statusCode ?? 0);
      });
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no answer within 3 s`)));
    req.on("error", reject);
    req.end();
  });
}

let ownPki: Promise<Pki> | undefined;

/**
 * The CA that signs the webhook's serving certificates: the suite's own (the cluster's) or, for an
 * existing cluster, one made for the webhook. Its PEM is what a caBundle must carry.
 */
export function webhookCa(cluster: Pick<Cluster, "pki"> | undefined): Promise<Pki> {
  if (cluster?.pki !== undefined) return Promise.resolve(cluster.pki);
  ownPki ??= createPki(makeTempDir("dso-e2e-webhook-pki"));
  return ownPki;
}

/** Where the chart's Deployment mounts its volumes (charts/dso/templates/webhook-deployment.yaml). */
const POLICY_DIR = "/etc/dso/policy";
const TLS_DIR = "/etc/dso/tls";
/** Not in the chart (in a pod the webhook uses its service account): the admin kubeconfig. */
const KUBE_DIR = "/etc/dso/kube";

/**
 * Starts the webhook (see the file header). `cluster` may be undefined for a webhook that serves
 * with a certificate of its own CA and never talks to an API server (the image test).
 */
export async function startWebhook(
  cluster: Cluster | undefined,
  opts: WebhookOptions = {},
): Promise<Webhook> {
  const port = opts.port ?? (await freePort());
  const image = imageRuntime("webhook");
  const volumes = makeTempDir("dso-e2e-webhook", "/dev/shm");
  const mounts: ImageMount[] = [];
  const env: Record<string, string> = {
    DSO_WEBHOOK_PORT: String(port),
    DSO_WEBHOOK_HOST: "127.0.0.1",
    DSO_LOG_LEVEL: opts.logLevel ?? "info",
    // Policy edits in tests must show within a second or two, not the default 10 s poll.
    DSO_WATCH_POLL_INTERVAL: "1",
    DSO_SHUTDOWN_TIMEOUT: "2",
    ...opts.env,
  };
  if (opts.policyFile !== undefined) {
    // The directory, as the chart mounts its ConfigMap: edits to the file show through. A policy
    // is not secret (kubelet gives ConfigMap volumes 0755/0644): the image's user must reach it.
    const dir = dirname(opts.policyFile);
    chmodSync(dir, statSync(dir).mode | 0o755);
    chmodSync(opts.policyFile, statSync(opts.policyFile).mode | 0o444);
    mounts.push({ source: dir, target: POLICY_DIR, readOnly: true });
    env.DSO_POLICY_FILE = `${POLICY_DIR}/${basename(opts.policyFile)}`;
  }

  let caPem: string;
  let host = "127.0.0.1";
  if (opts.selfSigned === undefined) {
    const pki = await webhookCa(cluster);
    const leaf = await pki.issue(`webhook-${port}`, {
      subject: "/CN=127.0.0.1",
      usage: "server",
      sans: ["IP:127.0.0.1", "DNS:localhost"],
    });
    caPem = pki.caPem;
    // Like the chart's TLS Secret volume: readable by the webhook's user only.
    const tls = volumeDir(volumes, "tls", 0o750, 0, image.gid);
    for (const [from, to] of [
      [leaf.cert, "tls.crt"],
      [leaf.key, "tls.key"],
    ] as const) {
      copyFileSync(from, join(tls, to));
      chownSync(join(tls, to), image.uid, image.gid);
      chmodSync(join(tls, to), 0o400);
    }
    mounts.push({ source: tls, target: TLS_DIR, readOnly: true });
    Object.assign(env, {
      DSO_CERT_MODE: "files",
      DSO_TLS_CERT: `${TLS_DIR}/tls.crt`,
      DSO_TLS_KEY: `${TLS_DIR}/tls.key`,
    });
  } else {
    if (cluster === undefined) throw new Error("startWebhook: self-signed mode needs a cluster");
    const s = opts.selfSigned;
    host = s.serviceName ?? "localhost";
    Object.assign(env, {
      DSO_CERT_MODE: "self-signed",
      DSO_SELF_SIGNED_SECRET: s.secretName,
      DSO_WEBHOOK_CONFIG_NAME: s.webhookConfigName,
      DSO_SERVICE_NAME: host,
      DSO_NAMESPACE: s.namespace,
      KUBECONFIG: `${KUBE_DIR}/kubeconfig`,
    });
    const kube = volumeDir(volumes, "kube", 0o750, 0, image.gid);
    copyFileSync(cluster.kubeconfig, join(kube, "kubeconfig"));
    chownSync(join(kube, "kubeconfig"), image.uid, image.gid);
    chmodSync(join(kube, "kubeconfig"), 0o400);
    mounts.push({ source: kube, target: KUBE_DIR, readOnly: true });
    caPem = "";
  }
  // The chart's in-memory /tmp emptyDir; last, because it covers the host's /tmp.
  mounts.push({ source: volumeDir(volumes, "tmp", 0o1777, 0, 0), target: "/tmp" });

  const logDir = process.env.DSO_E2E_LOG_DIR;
  if (logDir !== undefined && logDir !== "") mkdirSync(logDir, { recursive: true });
  const proc = spawnImage("webhook", {
    name: "dso-webhook",
    env,
    mounts,
    ...(logDir !== undefined && logDir !== ""
      ? { logFile: join(logDir, `webhook-${port}.log`) }
      : {}),
  });

  if (opts.selfSigned !== undefined) {
    if (cluster === undefined) throw new Error("startWebhook: self-signed mode needs a cluster");
    const s = opts.selfSigned;
    // The webhook publishes its CA in the Secret it creates; that is what a client trusts.
    caPem = await waitFor(
      async () => {
        const r = await cluster.apiRequest(
          "GET",
          `/api/v1/namespaces/${s.namespace}/secrets/${s.secretName}`,
        );
        if (r.status !== 200) return undefined;
        const data = (r.body as { data?: Record<string, string> }).data;
        const ca = data?.["ca.crt"];
        return ca === undefined ? undefined : Buffer.from(ca, "base64").toString("utf8");
      },
      {
        timeoutMs: 30_000,
        what: `the self-signed webhook to create Secret ${s.namespace}/${s.secretName} with a ca.crt`,
        processes: [proc],
      },
    );
  }

  const readyz = `https://127.0.0.1:${port}/readyz`;
  await waitFor(
    async () => (await get(readyz, caPem, host === "127.0.0.1" ? undefined : host)) === 200,
    {
      timeoutMs: 30_000,
      what: `the DSO webhook's ${readyz} to return 200`,
      processes: [proc],
    },
  );

  return {
    url: `https://${host}:${port}/mutate`,
    caBundle: Buffer.from(caPem, "utf8").toString("base64"),
    caPem,
    port,
    process: proc,
    logs: () => proc.logs(),
    stop: async () => {
      await proc.stop();
    },
  };
}
