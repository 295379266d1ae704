// A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager
// (so Deployments create ReplicaSets and pods the way users see it; pods stay Pending because
// there is no scheduler or kubelet, but admission runs and the API server stores them).
// Commands and flags are the ones verified in test/e2e/README-infra-notes.md.
//
// DSO_E2E_KUBECONFIG points the suite at an existing cluster instead; that cluster must be able
// to reach webhooks on this machine's 127.0.0.1 (a control plane running on this host).
import { request } from "node:https";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { createPki, type Pki } from "./pki.js";
import {
  freePort,
  makeTempDir,
  removeTempDir,
  run,
  spawnManaged,
  waitFor,
  type ManagedProcess,
  type RunResult,
} from "./processes.js";

export interface ApiResponse {
  status: number;
  /** Parsed JSON body, or the raw text when it is not JSON. */
  body: unknown;
}

export class ApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly body: unknown,
  ) {
    const msg =
      typeof body === "object" && body !== null && "message" in body
        ? String(body.message)
        : JSON.stringify(body);
    super(`${method} ${path} -> ${status}: ${msg}`);
    this.name = "ApiError";
  }
}

export interface Cluster {
  /** https://127.0.0.1:<port> */
  apiUrl: string;
  /** PEM file of the CA that signed the API server's certificate. */
  caFile: string;
  caPem: string;
  /** Bearer token of a cluster-admin (system:masters). */
  adminToken: string;
  /** Path of a kubeconfig for kubectl/helm with admin rights. */
  kubeconfig: string;
  /** The suite's CA (absent for an existing cluster): issue serving certs for other servers. */
  pki?: Pki;
  /** Temp dir owned by this cluster (removed on stop). */
  dir: string;
  /** Server processes (empty for an existing cluster); their logs help failure messages. */
  processes: ManagedProcess[];
  kubectl(
    args: readonly string[],
    opts?: { input?: string; timeoutMs?: number },
  ): Promise<RunResult>;
  /** kubectl that throws (with stderr) on a non-zero exit; returns stdout. */
  kubectlOk(
    args: readonly string[],
    opts?: { input?: string; timeoutMs?: number },
  ): Promise<string>;
  /** A service-account token from the TokenRequest API, optionally bound to a pod. */
  requestToken(
    namespace: string,
    serviceAccount: string,
    audience: string,
    expirationSeconds?: number,
    boundPod?: { name: string; uid: string },
  ): Promise<string>;
  /** JSON request as admin; throws ApiError on a non-2xx status. PATCH defaults to merge patch. */
  api<T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T>;
  /** Like api() but returns the status instead of throwing. */
  apiRequest(
    method: string,
    path: string,
    body?: unknown,
    contentType?: string,
  ): Promise<ApiResponse>;
  stop(): Promise<void>;
}

function requireBin(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === "") {
    throw new Error(
      `${name} is not set: run the suite with \`npm run test:e2e\` (its global setup loads test/e2e/provision.sh's paths)`,
    );
  }
  return v;
}

interface Credentials {
  ca: string;
  token?: string;
  cert?: string;
  key?: string;
}

function httpsJson(
  base: string,
  creds: Credentials,
  method: string,
  path: string,
  body?: unknown,
  contentType?: string,
  timeoutMs = 30_000,
): Promise<ApiResponse> {
  const url = new URL(path, base);
  const payload =
    body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  const headers: Record<string, string> = { Accept: "application/json" };
  if (creds.token !== undefined) headers.Authorization = `Bearer ${creds.token}`;
  if (payload !== undefined) {
    headers["Content-Type"] =
      contentType ?? (method === "PATCH" ? "application/merge-patch+json" : "application/json");
    headers["Content-Length"] = String(Buffer.byteLength(payload));
  }
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, headers, ca: creds.ca, cert: creds.cert, key: creds.key, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON (e.g. /readyz returns "ok")
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () =>
      req.destroy(new Error(`${method} ${url.href}: no answer within ${timeoutMs} ms`)),
    );
    req.on("error", reject);
    req.end(payload);
  });
}

function makeClient(
  apiUrl: string,
  creds: Credentials,
  kubectlBin: string,
  kubeconfig: string,
): Pick<Cluster, "kubectl" | "kubectlOk" | "api" | "apiRequest" | "requestToken"> {
  const apiRequest = (method: string, path: string, body?: unknown, contentType?: string) =>
    httpsJson(apiUrl, creds, method, path, body, contentType);
  const api = async <T>(
    method: string,
    path: string,
    body?: unknown,
    contentType?: string,
  ): Promise<T> => {
    const r = await apiRequest(method, path, body, contentType);
    if (r.status < 200 || r.status >= 300) throw new ApiError(method, path, r.status, r.body);
    return r.body as T;
  };
  const kubectl = (args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}) =>
    run(kubectlBin, ["--kubeconfig", kubeconfig, ...args], {
      input: opts.input,
      timeoutMs: opts.timeoutMs ?? 60_000,
      env: { ...process.env, HOME: join(kubeconfig, "..") },
    });
  const kubectlOk = async (
    args: readonly string[],
    opts: { input?: string; timeoutMs?: number } = {},
  ) => {
    const r = await kubectl(args, opts);
    if (r.code !== 0)
      throw new Error(`kubectl ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
    return r.stdout;
  };
  const requestToken = async (
    namespace: string,
    serviceAccount: string,
    audience: string,
    expirationSeconds = 600,
    boundPod?: { name: string; uid: string },
  ): Promise<string> => {
    const tr = await api<{ status: { token: string } }>(
      "POST",
      `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`,
      {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: {
          audiences: [audience],
          expirationSeconds,
          ...(boundPod === undefined
            ? {}
            : {
                boundObjectRef: {
                  apiVersion: "v1",
                  kind: "Pod",
                  name: boundPod.name,
                  uid: boundPod.uid,
                },
              }),
        },
      },
    );
    return tr.status.token;
  };
  return { kubectl, kubectlOk, api, apiRequest, requestToken };
}

function logFile(name: string): string | undefined {
  const dir = process.env.DSO_E2E_LOG_DIR;
  return dir === undefined || dir === "" ? undefined : join(dir, `${name}.log`);
}

/** Starts etcd, kube-apiserver and kube-controller-manager (or connects to DSO_E2E_KUBECONFIG). */
export async function startCluster(): Promise<Cluster> {
  const existing = process.env.DSO_E2E_KUBECONFIG;
  if (existing !== undefined && existing !== "") return connectCluster(existing);

  const etcdBin = requireBin("DSO_E2E_ETCD");
  const apiserverBin = requireBin("DSO_E2E_KUBE_APISERVER");
  const kcmBin = requireBin("DSO_E2E_KUBE_CONTROLLER_MANAGER");
  const kubectlBin = requireBin("DSO_E2E_KUBECTL");

  const dir = makeTempDir("dso-e2e-cluster");
  const processes: ManagedProcess[] = [];
  const stopAll = async (): Promise<void> => {
    for (const p of [...processes].reverse()) await p.stop();
    removeTempDir(dir);
  };
  try {
    const [etcdPort, etcdPeer, apiPort, kcmPort] = await distinctPorts(4);
    const pkiPromise = createPki(join(dir, "pki"));

    const etcd = spawnManaged(
      "etcd",
      etcdBin,
      [
        "--name",
        "e2e",
        "--data-dir",
        join(dir, "etcd"),
        "--listen-client-urls",
        `http://127.0.0.1:${etcdPort}`,
        "--advertise-client-urls",
        `http://127.0.0.1:${etcdPort}`,
        "--listen-peer-urls",
        `http://127.0.0.1:${etcdPeer}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${etcdPeer}`,
        "--initial-cluster",
        `e2e=http://127.0.0.1:${etcdPeer}`,
        "--unsafe-no-fsync",
        "--log-level=warn",
      ],
      { logFile: logFile("etcd"), env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } },
    );
    processes.push(etcd);

    const pki = await pkiPromise;
    const [apiserverLeaf, adminLeaf] = await Promise.all([
      pki.issue("apiserver", {
        subject: "/CN=kube-apiserver",
        usage: "server",
        sans: [
          "IP:127.0.0.1",
          "DNS:localhost",
          "DNS:kubernetes",
          "DNS:kubernetes.default",
          "DNS:kubernetes.default.svc",
          "IP:10.0.0.1",
        ],
      }),
      pki.issue("admin", { subject: "/O=system:masters/CN=dso-e2e-admin", usage: "client" }),
    ]);
    const adminToken = randomBytes(16).toString("hex");
    const tokensCsv = join(pki.dir, "tokens.csv");
    writeFileSync(tokensCsv, `${adminToken},dso-e2e-admin,dso-e2e-admin,"system:masters"\n`, {
      mode: 0o600,
    });

    await waitFor(
      async () => {
        const r = await fetch(`http://127.0.0.1:${etcdPort}/health`);
        return r.ok;
      },
      { timeoutMs: 30_000, what: "etcd /health to answer", processes: [etcd] },
    );

    const apiserver = spawnManaged(
      "kube-apiserver",
      apiserverBin,
      [
        `--etcd-servers=http://127.0.0.1:${etcdPort}`,
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        `--secure-port=${apiPort}`,
        `--tls-cert-file=${apiserverLeaf.cert}`,
        `--tls-private-key-file=${apiserverLeaf.key}`,
        `--client-ca-file=${pki.caCert}`,
        `--token-auth-file=${tokensCsv}`,
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        `--service-account-key-file=${pki.saPub}`,
        `--service-account-signing-key-file=${pki.saKey}`,
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--endpoint-reconciler-type=none",
        `--cert-dir=${join(dir, "apiserver-certs")}`,
        "--profiling=false",
      ],
      { logFile: logFile("kube-apiserver"), env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } },
    );
    processes.push(apiserver);

    const apiUrl = `https://127.0.0.1:${apiPort}`;
    const creds: Credentials = { ca: pki.caPem, token: adminToken };
    await waitFor(
      async () => {
        const r = await httpsJson(apiUrl, creds, "GET", "/readyz", undefined, undefined, 5_000);
        return r.status === 200;
      },
      {
        timeoutMs: 90_000,
        what: "kube-apiserver /readyz to return ok",
        processes: [etcd, apiserver],
      },
    );

    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(
      kubeconfig,
      stringifyYaml({
        apiVersion: "v1",
        kind: "Config",
        clusters: [
          {
            name: "e2e",
            cluster: { server: apiUrl, "certificate-authority-data": b64(pki.caPem) },
          },
        ],
        users: [
          {
            name: "admin",
            user: {
              "client-certificate-data": b64(adminLeaf.certPem),
              "client-key-data": b64(adminLeaf.keyPem),
            },
          },
        ],
        contexts: [{ name: "e2e", context: { cluster: "e2e", user: "admin" } }],
        "current-context": "e2e",
      }),
      { mode: 0o600 },
    );

    const kcm = spawnManaged(
      "kube-controller-manager",
      kcmBin,
      [
        `--kubeconfig=${kubeconfig}`,
        `--authentication-kubeconfig=${kubeconfig}`,
        `--authorization-kubeconfig=${kubeconfig}`,
        "--bind-address=127.0.0.1",
        `--secure-port=${kcmPort}`,
        "--leader-elect=false",
        `--service-account-private-key-file=${pki.saKey}`,
        `--root-ca-file=${pki.caCert}`,
        `--cluster-signing-cert-file=${pki.caCert}`,
        `--cluster-signing-key-file=${pki.caKey}`,
        "--use-service-account-credentials=true",
        "--controllers=*",
        `--cert-dir=${join(dir, "kcm-certs")}`,
        "--profiling=false",
      ],
      {
        logFile: logFile("kube-controller-manager"),
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      },
    );
    processes.push(kcm);

    const client = makeClient(apiUrl, creds, kubectlBin, kubeconfig);
    // The controller-manager is working once it has created the default ServiceAccount; pods
    // (even Deployment-made ones) are refused by the ServiceAccount admission plugin before that.
    await waitFor(
      async () =>
        (await client.apiRequest("GET", "/api/v1/namespaces/default/serviceaccounts/default"))
          .status === 200,
      {
        timeoutMs: 90_000,
        what: "kube-controller-manager to create the default ServiceAccount in namespace default",
        processes: [etcd, apiserver, kcm],
      },
    );

    return {
      apiUrl,
      caFile: pki.caCert,
      caPem: pki.caPem,
      adminToken,
      kubeconfig,
      pki,
      dir,
      processes,
      ...client,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

function b64(s: string): string {
  return Buffer.from(s, "utf8").toString("base64");
}

async function distinctPorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

interface KubeconfigFile {
  "current-context"?: string;
  contexts?: { name: string; context: { cluster: string; user: string } }[];
  clusters?: {
    name: string;
    cluster: {
      server: string;
      "certificate-authority-data"?: string;
      "certificate-authority"?: string;
    };
  }[];
  users?: {
    name: string;
    user: {
      token?: string;
      "client-certificate-data"?: string;
      "client-key-data"?: string;
      "client-certificate"?: string;
      "client-key"?: string;
    };
  }[];
}

/** Uses an existing cluster through its kubeconfig (current context). Nothing is started. */
async function connectCluster(kubeconfig: string): Promise<Cluster> {
  const kubectlBin = requireBin("DSO_E2E_KUBECTL");
  const cfg = parseYaml(readFileSync(kubeconfig, "utf8")) as KubeconfigFile;
  const ctx = cfg.contexts?.find((c) => c.name === cfg["current-context"])?.context;
  const cl = cfg.clusters?.find((c) => c.name === ctx?.cluster)?.cluster;
  const user = cfg.users?.find((u) => u.name === ctx?.user)?.user;
  if (ctx === undefined || cl === undefined || user === undefined) {
    throw new Error(
      `DSO_E2E_KUBECONFIG=${kubeconfig}: current-context, its cluster or its user is missing`,
    );
  }
  const fromData = (data: string | undefined, file: string | undefined): string | undefined =>
    data !== undefined
      ? Buffer.from(data, "base64").toString("utf8")
      : file !== undefined
        ? readFileSync(file, "utf8")
        : undefined;
  const caPem = fromData(cl["certificate-authority-data"], cl["certificate-authority"]);
  if (caPem === undefined)
    throw new Error(`DSO_E2E_KUBECONFIG=${kubeconfig}: the cluster has no certificate authority`);
  const dir = makeTempDir("dso-e2e-cluster");
  const caFile = join(dir, "ca.crt");
  writeFileSync(caFile, caPem);
  const creds: Credentials = {
    ca: caPem,
    token: user.token,
    cert: fromData(user["client-certificate-data"], user["client-certificate"]),
    key: fromData(user["client-key-data"], user["client-key"]),
  };
  const client = makeClient(cl.server, creds, kubectlBin, kubeconfig);
  let adminToken = user.token;
  if (adminToken === undefined) {
    // Tests hand a bearer token to other servers (e.g. OpenBao's token reviewer): make one.
    await client.kubectl(["create", "serviceaccount", "dso-e2e-admin", "-n", "kube-system"]);
    await client.kubectl([
      "create",
      "clusterrolebinding",
      "dso-e2e-admin",
      "--clusterrole=cluster-admin",
      "--serviceaccount=kube-system:dso-e2e-admin",
    ]);
    adminToken = (
      await client.kubectlOk([
        "create",
        "token",
        "dso-e2e-admin",
        "-n",
        "kube-system",
        "--duration=2h",
      ])
    ).trim();
  }
  return {
    apiUrl: cl.server,
    caFile,
    caPem,
    adminToken,
    kubeconfig,
    dir,
    processes: [],
    ...client,
    stop: () => {
      removeTempDir(dir);
      return Promise.resolve();
    },
  };
}
