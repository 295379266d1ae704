// The DSO webhook as the image runs it (`node build/webhook/main.mjs`), on 127.0.0.1 with a
// serving certificate from the suite's CA, or in self-signed bootstrap mode against the cluster.
import { request } from "node:https";
import { join } from "node:path";
import type { Cluster } from "./cluster.js";
import { bundleDir, repoRoot } from "../global-setup.js";
import { createPki, type Pki } from "./pki.js";
import { freePort, makeTempDir, spawnManaged, waitFor, type ManagedProcess } from "./processes.js";

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
export function webhookCa(cluster: Cluster): Promise<Pki> {
  if (cluster.pki !== undefined) return Promise.resolve(cluster.pki);
  ownPki ??= createPki(makeTempDir("dso-e2e-webhook-pki"));
  return ownPki;
}

export async function startWebhook(cluster: Cluster, opts: WebhookOptions = {}): Promise<Webhook> {
  const port = opts.port ?? (await freePort());
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    DSO_WEBHOOK_PORT: String(port),
    DSO_WEBHOOK_HOST: "127.0.0.1",
    DSO_LOG_LEVEL: opts.logLevel ?? "info",
    // Policy edits in tests must show within a second or two, not the default 10 s poll.
    DSO_WATCH_POLL_INTERVAL: "1",
    DSO_SHUTDOWN_TIMEOUT: "2",
    ...(opts.policyFile === undefined ? {} : { DSO_POLICY_FILE: opts.policyFile }),
    ...opts.env,
  };

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
    env.DSO_TLS_CERT = leaf.cert;
    env.DSO_TLS_KEY = leaf.key;
  } else {
    const s = opts.selfSigned;
    host = s.serviceName ?? "localhost";
    Object.assign(env, {
      DSO_CERT_MODE: "self-signed",
      DSO_SELF_SIGNED_SECRET: s.secretName,
      DSO_WEBHOOK_CONFIG_NAME: s.webhookConfigName,
      DSO_SERVICE_NAME: host,
      DSO_NAMESPACE: s.namespace,
      KUBECONFIG: cluster.kubeconfig,
    });
    caPem = "";
  }

  const proc = spawnManaged("dso-webhook", process.execPath, [webhookMain()], {
    env,
    cwd: repoRoot,
    ...(process.env.DSO_E2E_LOG_DIR
      ? { logFile: join(process.env.DSO_E2E_LOG_DIR, `webhook-${port}.log`) }
      : {}),
  });

  if (opts.selfSigned !== undefined) {
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
