// OpenBao (Vault's API) for the e2e suite: a dev server (in memory, plain HTTP) for most tests, or a
// "real" server (file storage, initialised and unsealed by the harness, optionally TLS with our own
// PKI) for tests that restart it and must keep its state: dev mode forgets everything on restart.
//
// DSO_E2E_VAULT_ADDR + DSO_E2E_VAULT_TOKEN point the suite at an existing Vault/OpenBao instead
// (DSO_E2E_VAULT_CACERT for its CA); then stop/restart are refused with a clear message.
import { readFileSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import type { Cluster } from "./cluster.js";
import type { Pki } from "./pki.js";
import {
  freePort,
  makeTempDir,
  run,
  spawnManaged,
  tail,
  waitFor,
  type ManagedProcess,
  type RunResult,
} from "./processes.js";

export interface OpenBaoOptions {
  /** Serve HTTPS with a certificate for 127.0.0.1 issued by this CA (implies a non-dev server). */
  tlsPki?: Pki;
  /** A non-dev server with file storage: survives restart() with its data, tokens and leases. */
  persistent?: boolean;
}

export class VaultApiError extends Error {
  constructor(
    readonly status: number,
    readonly errors: string[],
    what: string,
  ) {
    super(`OpenBao ${what}: HTTP ${status} ${errors.join("; ")}`);
  }
}

export interface KubernetesRole {
  serviceAccounts: string[];
  namespaces: string[];
  policies: string[];
  audience?: string;
  ttl?: string;
}

export interface OpenBao {
  address: string;
  rootToken: string;
  /** PEM file that verifies the server's certificate (TLS only). */
  caFile?: string;
  caPem?: string;
  /** Where the server's data, config and logs live (on disk; the leak scan covers it). */
  dir: string;
  /** Raw API call with the root token (or `token`); throws VaultApiError on 4xx/5xx. */
  api<T = unknown>(method: string, path: string, body?: unknown, token?: string): Promise<T>;
  /** KV v2 write under `secret/` style mounts: `kv2Put("secret", "app/db", {...})`. */
  kv2Put(mount: string, path: string, data: Record<string, unknown>): Promise<number>;
  kv1Put(mount: string, path: string, data: Record<string, unknown>): Promise<void>;
  /** Enables a secrets engine unless one is mounted there already. */
  ensureMount(path: string, type: string, options?: Record<string, string>): Promise<void>;
  putPolicy(name: string, hcl: string): Promise<void>;
  /** Kubernetes auth at auth/<mount> against the cluster's API server (TokenReview). */
  enableKubernetesAuth(cluster: Cluster, opts?: { mount?: string }): Promise<void>;
  kubernetesRole(name: string, role: KubernetesRole, mount?: string): Promise<void>;
  /** The file audit device's path (declared in the server config). Values in it are HMACs, never plain. */
  enableAudit(): Promise<string>;
  /** Parsed audit log entries (request and response). */
  auditEntries(): AuditEntry[];
  /** Successful logins at `loginPath` (e.g. `auth/kubernetes/login`) in the audit log. */
  loginCount(loginPath: string): number;
  /** The `bao` CLI against this server (root token in the child's environment). */
  bao(args: string[]): Promise<RunResult>;
  logs(): string;
  stop(): Promise<void>;
  /** Starts the server again on the same address (and unseals it, when persistent). */
  start(): Promise<void>;
  restart(): Promise<void>;
}

export interface AuditEntry {
  /** RFC 3339 time of the entry. */
  time?: string;
  type: "request" | "response";
  request?: { path?: string; operation?: string };
  auth?: { accessor?: string };
  error?: string;
}

interface HttpResult {
  status: number;
  text: string;
}

function httpJson(
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string; ca?: string },
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = (u.protocol === "https:" ? httpsRequest : httpRequest)(
      u,
      {
        method: init.method,
        headers: init.headers,
        timeout: 15_000,
        ...(init.ca !== undefined ? { ca: init.ca } : {}),
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, text });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`request to ${u.origin} timed out`)));
    req.on("error", reject);
    req.end(init.body);
  });
}

function baoBin(): string {
  const bin = process.env.DSO_E2E_BAO;
  if (bin === undefined || bin === "") {
    throw new Error("DSO_E2E_BAO is not set: run test/e2e/provision.sh (the globalSetup does)");
  }
  return bin;
}

export async function startOpenBao(opts: OpenBaoOptions = {}): Promise<OpenBao> {
  const external = process.env.DSO_E2E_VAULT_ADDR;
  const dir = makeTempDir("dso-e2e-openbao");
  const isExternal = external !== undefined && external !== "";
  // An external Vault's file audit device, if the suite can read it (DSO_E2E_VAULT_AUDIT_LOG).
  const auditFile = isExternal
    ? (process.env.DSO_E2E_VAULT_AUDIT_LOG ?? "")
    : join(dir, "audit.log");
  /** Entries older than this handle belong to earlier runs (an external Vault's log). */
  const startedAt = Date.now();
  let address: string;
  let rootToken: string;
  let caFile: string | undefined;
  let caPem: string | undefined;
  let proc: ManagedProcess | undefined;
  /** Every server process started (restarts included), for logs(). */
  const procs: ManagedProcess[] = [];
  let unsealKey: string | undefined;
  let startServer: () => Promise<void>;
  const logFile = join(dir, "bao.log");
  const auditStanza = `audit "file" "file" {\n  options {\n    file_path = "${auditFile}"\n  }\n}\n`;

  const call = async <T>(
    method: string,
    path: string,
    body: unknown,
    token: string | undefined,
  ): Promise<T> => {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (token !== undefined && token !== "") headers["x-vault-token"] = token;
    const res = await httpJson(`${address}/v1/${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      ...(caPem !== undefined ? { ca: caPem } : {}),
    });
    let parsed: unknown = undefined;
    if (res.text !== "") {
      try {
        parsed = JSON.parse(res.text);
      } catch {
        parsed = undefined;
      }
    }
    if (res.status >= 400) {
      const errs =
        typeof parsed === "object" && parsed !== null && "errors" in parsed
          ? (parsed as { errors: string[] }).errors
          : [res.text.slice(0, 200)];
      throw new VaultApiError(res.status, errs, `${method} ${path}`);
    }
    return parsed as T;
  };

  if (external !== undefined && external !== "") {
    address = external.replace(/\/+$/, "");
    rootToken = process.env.DSO_E2E_VAULT_TOKEN ?? "";
    if (rootToken === "")
      throw new Error("DSO_E2E_VAULT_ADDR is set but DSO_E2E_VAULT_TOKEN is not");
    const ca = process.env.DSO_E2E_VAULT_CACERT;
    if (ca !== undefined && ca !== "") {
      caFile = ca;
      caPem = readFileSync(ca, "utf8");
    }
    startServer = () =>
      Promise.reject(
        new Error(
          "cannot start/restart an external Vault (DSO_E2E_VAULT_ADDR); run this test against the local OpenBao",
        ),
      );
  } else {
    const port = await freePort();
    const persistent = opts.persistent === true || opts.tlsPki !== undefined;
    const scheme = opts.tlsPki !== undefined ? "https" : "http";
    address = `${scheme}://127.0.0.1:${port}`;
    // HOME keeps the CLI's token helper file out of the real home directory.
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir };
    if (!persistent) {
      // The dev root token is an infrastructure credential of the test, not a workload secret.
      rootToken = `root-${Math.random().toString(36).slice(2, 10)}`;
      // OpenBao 2.4 only creates audit devices from configuration (the API refuses): -dev merges it.
      const auditConfig = join(dir, "audit.hcl");
      writeFileSync(auditConfig, auditStanza);
      const args = [
        "server",
        "-dev",
        `-config=${auditConfig}`,
        `-dev-root-token-id=${rootToken}`,
        `-dev-listen-address=127.0.0.1:${port}`,
      ];
      startServer = async () => {
        proc = spawnManaged("openbao", baoBin(), args, { env, logFile });
        procs.push(proc);
        await waitHealthy();
      };
    } else {
      rootToken = "";
      let tls = `  tls_disable = true`;
      if (opts.tlsPki !== undefined) {
        const leaf = await opts.tlsPki.issue(`openbao-${port}`, {
          subject: "/CN=127.0.0.1",
          usage: "server",
          sans: ["IP:127.0.0.1", "DNS:localhost"],
        });
        caFile = opts.tlsPki.caCert;
        caPem = opts.tlsPki.caPem;
        tls = `  tls_cert_file = "${leaf.cert}"\n  tls_key_file = "${leaf.key}"\n  tls_min_version = "tls12"`;
      }
      const config = join(dir, "bao.hcl");
      writeFileSync(
        config,
        [
          `storage "file" {`,
          `  path = "${join(dir, "data")}"`,
          `}`,
          `listener "tcp" {`,
          `  address = "127.0.0.1:${port}"`,
          tls,
          `}`,
          `api_addr = "${address}"`,
          `disable_mlock = true`,
          `ui = false`,
          auditStanza,
        ].join("\n"),
      );
      startServer = async () => {
        proc = spawnManaged("openbao", baoBin(), ["server", `-config=${config}`], { env, logFile });
        procs.push(proc);
        await waitFor(
          async () => {
            const r = await httpJson(`${address}/v1/sys/seal-status`, {
              method: "GET",
              headers: {},
              ...(caPem !== undefined ? { ca: caPem } : {}),
            });
            return r.status === 200;
          },
          { timeoutMs: 30_000, what: `OpenBao at ${address} to answer`, processes: [proc] },
        );
        if (unsealKey === undefined) {
          const init = await call<{ keys_base64: string[]; root_token: string }>(
            "PUT",
            "sys/init",
            { secret_shares: 1, secret_threshold: 1 },
            undefined,
          );
          unsealKey = init.keys_base64[0];
          rootToken = init.root_token;
        }
        await call("PUT", "sys/unseal", { key: unsealKey }, undefined);
        await waitHealthy();
      };
    }
  }

  async function waitHealthy(): Promise<void> {
    await waitFor(
      async () => {
        const r = await httpJson(`${address}/v1/sys/health`, {
          method: "GET",
          headers: {},
          ...(caPem !== undefined ? { ca: caPem } : {}),
        });
        // 200 = initialised, unsealed and active.
        return r.status === 200;
      },
      {
        timeoutMs: 30_000,
        what: `OpenBao at ${address} to report healthy (initialised, unsealed, active)`,
        ...(proc !== undefined ? { processes: [proc] } : {}),
      },
    );
  }

  if (external !== undefined && external !== "") await waitHealthy();
  else await startServer();

  const bao: OpenBao = {
    address,
    get rootToken() {
      return rootToken;
    },
    ...(caFile !== undefined ? { caFile } : {}),
    ...(caPem !== undefined ? { caPem } : {}),
    dir,
    api: (method, path, body, token) => call(method, path, body, token ?? rootToken),
    async kv2Put(mount, path, data) {
      const r = await call<{ data: { version: number } }>(
        "POST",
        `${mount}/data/${path}`,
        { data },
        rootToken,
      );
      return r.data.version;
    },
    async kv1Put(mount, path, data) {
      await call("POST", `${mount}/${path}`, data, rootToken);
    },
    async ensureMount(path, type, options) {
      const mounts = await call<Record<string, unknown>>("GET", "sys/mounts", undefined, rootToken);
      const existing = (mounts as { data?: Record<string, unknown> }).data ?? mounts;
      if (`${path}/` in existing) return;
      await call(
        "POST",
        `sys/mounts/${path}`,
        { type, ...(options !== undefined ? { options } : {}) },
        rootToken,
      );
    },
    async putPolicy(name, hcl) {
      await call("PUT", `sys/policies/acl/${name}`, { policy: hcl }, rootToken);
    },
    async enableKubernetesAuth(cluster, o = {}) {
      const mount = o.mount ?? "kubernetes";
      // The reviewer: a service account allowed to call TokenReview (system:auth-delegator).
      for (const args of [
        ["create", "serviceaccount", "openbao-reviewer", "-n", "default"],
        [
          "create",
          "clusterrolebinding",
          "openbao-reviewer",
          "--clusterrole=system:auth-delegator",
          "--serviceaccount=default:openbao-reviewer",
        ],
      ]) {
        const r = await cluster.kubectl(args);
        if (r.code !== 0 && !r.stderr.includes("AlreadyExists")) {
          throw new Error(`kubectl ${args.join(" ")} failed: ${r.stderr}`);
        }
      }
      const t = await cluster.kubectl([
        "create",
        "token",
        "openbao-reviewer",
        "-n",
        "default",
        "--duration=2h",
      ]);
      if (t.code !== 0)
        throw new Error(`kubectl create token openbao-reviewer failed: ${t.stderr}`);
      const auths = await call<{ data?: Record<string, unknown> }>(
        "GET",
        "sys/auth",
        undefined,
        rootToken,
      );
      if (!(`${mount}/` in (auths.data ?? auths))) {
        await call("POST", `sys/auth/${mount}`, { type: "kubernetes" }, rootToken);
      }
      await call(
        "POST",
        `auth/${mount}/config`,
        {
          kubernetes_host: cluster.apiUrl,
          kubernetes_ca_cert: cluster.caPem,
          token_reviewer_jwt: t.stdout.trim(),
          disable_local_ca_jwt: true,
        },
        rootToken,
      );
    },
    async kubernetesRole(name, role, mount = "kubernetes") {
      await call(
        "POST",
        `auth/${mount}/role/${name}`,
        {
          bound_service_account_names: role.serviceAccounts,
          bound_service_account_namespaces: role.namespaces,
          token_policies: role.policies,
          ...(role.audience !== undefined ? { audience: role.audience } : {}),
          token_ttl: role.ttl ?? "10m",
        },
        rootToken,
      );
    },
    async enableAudit() {
      // Declared in the server's configuration (see above); only an external Vault needs the API.
      if (isExternal && auditFile === "") {
        throw new Error(
          "the tests count logins in Vault's audit log: set DSO_E2E_VAULT_AUDIT_LOG to the file of a file audit device of the external Vault (DSO_E2E_VAULT_ADDR)",
        );
      }
      await call("GET", "sys/audit", undefined, rootToken);
      return auditFile;
    },
    loginCount(loginPath) {
      return bao
        .auditEntries()
        .filter(
          (e) => e.type === "response" && e.request?.path === loginPath && e.error === undefined,
        ).length;
    },
    auditEntries() {
      let text = "";
      try {
        text = readFileSync(auditFile, "utf8");
      } catch {
        return [];
      }
      return text
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as AuditEntry)
        .filter((e) => e.time === undefined || Date.parse(e.time) >= startedAt - 1_000);
    },
    bao(args) {
      return run(baoBin(), args, {
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: dir,
          VAULT_ADDR: address,
          BAO_ADDR: address,
          VAULT_TOKEN: rootToken,
          BAO_TOKEN: rootToken,
          ...(caFile !== undefined ? { VAULT_CACERT: caFile, BAO_CACERT: caFile } : {}),
        },
        timeoutMs: 30_000,
      });
    },
    logs: () => procs.map((p) => p.logs()).join("\n"),
    async stop() {
      if (external !== undefined && external !== "") {
        throw new Error("cannot stop an external Vault (DSO_E2E_VAULT_ADDR)");
      }
      await proc?.stop(10_000);
    },
    start: () => startServer(),
    async restart() {
      await bao.stop();
      await startServer();
    },
  };
  return bao;
}

/** The last lines of the server's log, for failure messages. */
export function openBaoTail(bao: OpenBao): string {
  return tail(bao.logs());
}
