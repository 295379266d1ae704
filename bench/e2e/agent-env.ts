/**
 * What the agent and backend benchmarks share: the e2e suite's provisioned servers and this run's
 * snapshot of the agent bundle (the file the image runs as `node /app/main.mjs`), a local OpenBao
 * (dev mode, KV v2 at secret/) with AppRole auth for the agent, AgentConfig documents, and the
 * agent started as a process the way the image starts it (NODE_ENV=production, config in
 * DSO_AGENT_CONFIG, JSON logs on stdout drained through a pipe as a container runtime would).
 *
 * Why AppRole and not Kubernetes auth: Kubernetes auth needs the control plane (its TokenReview
 * is part of every login), which costs ~20 s to start per run; AppRole gives the same request
 * pattern to Vault (one login, then reads) without it. The e2e suite covers Kubernetes auth.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import setup, { bundleDir, loadProvisionedEnv } from "../../test/e2e/global-setup.js";
import { startOpenBao, type OpenBao } from "../../test/e2e/harness/openbao.js";
import {
  adoptTempDir,
  makeTempDir,
  spawnManaged,
  type ExitInfo,
  type ManagedProcess,
} from "../../test/e2e/harness/processes.js";

/** Loads the provisioned servers' paths and bundles the agent (under the suite's lock); returns the agent's main.mjs. */
export function prepareAgentBundle(): string {
  Object.assign(process.env, loadProvisionedEnv());
  // Undefined when a parent (bench/e2e/smoke.ts) bundled already and owns the snapshot.
  if (setup() !== undefined) adoptTempDir(bundleDir());
  return join(bundleDir(), "agent", "main.mjs");
}

export interface BenchVault {
  bao: OpenBao;
  roleIdFile: string;
  secretIdFile: string;
  /** Writes `count` KV v2 secrets `secret/bench/<prefix><i>` with keys username/password; returns their values. */
  putSecrets(
    prefix: string,
    count: number,
  ): Promise<Map<string, { username: string; password: string }>>;
}

/** OpenBao (dev mode) with an AppRole `bench` that may read secret/data/bench/* and database/creds/*. */
export async function startBenchVault(
  options: { tokenTtl?: string; dir?: string } = {},
): Promise<BenchVault> {
  const bao = await startOpenBao();
  await bao.putPolicy(
    "bench",
    [
      `path "secret/data/bench/*" { capabilities = ["read"] }`,
      `path "database/creds/*" { capabilities = ["read"] }`,
    ].join("\n"),
  );
  await bao.api("POST", "sys/auth/approle", { type: "approle" });
  await bao.api("POST", "auth/approle/role/bench", {
    token_policies: ["bench"],
    token_ttl: options.tokenTtl ?? "10m",
    token_max_ttl: "24h",
    secret_id_num_uses: 0,
  });
  const roleId = await bao.api<{ data: { role_id: string } }>(
    "GET",
    "auth/approle/role/bench/role-id",
  );
  const secretId = await bao.api<{ data: { secret_id: string } }>(
    "POST",
    "auth/approle/role/bench/secret-id",
  );
  // Credentials on tmpfs, readable only by this user (as a mounted Secret would be).
  const dir = options.dir ?? makeTempDir("dso-bench-approle", "/dev/shm");
  const roleIdFile = join(dir, "role_id");
  const secretIdFile = join(dir, "secret_id");
  writeFileSync(roleIdFile, roleId.data.role_id, { mode: 0o600 });
  writeFileSync(secretIdFile, secretId.data.secret_id, { mode: 0o600 });
  return {
    bao,
    roleIdFile,
    secretIdFile,
    async putSecrets(prefix, count) {
      const values = new Map<string, { username: string; password: string }>();
      for (let i = 0; i < count; i++) {
        const v = { username: `user-${i}`, password: randomBytes(12).toString("base64url") };
        await bao.kv2Put("secret", `bench/${prefix}${i}`, v);
        values.set(`secret/data/bench/${prefix}${i}`, v);
      }
      return values;
    },
  };
}

export interface SecretEntry {
  file: string;
  path: string;
  key?: string;
  template?: string;
}

export interface AgentConfigOptions {
  vault: BenchVault;
  /** Vault address the agent uses (the counting proxy's, usually). */
  address: string;
  mountPath: string;
  statePath?: string;
  refreshSeconds: number;
  secrets: SecretEntry[];
  telemetryPort?: number;
  /** CA file that verifies an HTTPS address. */
  caFile?: string;
}

/** An AgentConfig v1 as the webhook would write it, with AppRole auth. */
export function agentConfig(o: AgentConfigOptions): Record<string, unknown> {
  return {
    apiVersion: "dso.io/v1",
    kind: "AgentConfig",
    mountPath: o.mountPath,
    ...(o.statePath !== undefined ? { statePath: o.statePath } : {}),
    refreshSeconds: o.refreshSeconds,
    fileMode: 0o440,
    secrets: o.secrets.map((s) => ({
      file: s.file,
      ref: { provider: "vault", path: s.path, ...(s.key !== undefined ? { key: s.key } : {}) },
      ...(s.template !== undefined ? { template: s.template } : {}),
    })),
    vault: {
      addresses: [o.address],
      authMethod: "approle",
      authPath: "auth/approle",
      roleIdFile: o.vault.roleIdFile,
      secretIdFile: o.vault.secretIdFile,
      ...(o.caFile !== undefined ? { caFile: o.caFile } : {}),
    },
    pod: { namespace: "bench", name: "bench-pod", serviceAccount: "bench" },
    ...(o.telemetryPort !== undefined ? { telemetryPort: o.telemetryPort } : {}),
  };
}

/** A pod's two in-memory volumes (secrets and state hand-off) on tmpfs. */
export function podDirs(root: string, name: string): { mountPath: string; statePath: string } {
  const mountPath = join(root, name, "secrets");
  const statePath = join(root, name, "state");
  mkdirSync(mountPath, { recursive: true, mode: 0o700 });
  mkdirSync(statePath, { recursive: true, mode: 0o700 });
  return { mountPath, statePath };
}

export interface AgentRun extends ManagedProcess {
  /** performance.now() just before spawn. */
  spawnedAt: number;
  /** Resolves with the exit and the ms from spawn to exit. */
  finished: Promise<ExitInfo & { ms: number }>;
}

/** Starts the agent as the image does: `node main.mjs <mode>`, NODE_ENV=production, config in DSO_AGENT_CONFIG. */
export function spawnAgent(
  main: string,
  mode: "init" | "sidecar",
  config: Record<string, unknown>,
  options: { name: string; nodeArgs?: string[]; env?: Record<string, string> },
): AgentRun {
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    NODE_ENV: "production",
    DSO_AGENT_CONFIG: JSON.stringify(config),
    ...options.env,
  };
  const spawnedAt = performance.now();
  const proc = spawnManaged(
    options.name,
    process.execPath,
    [...(options.nodeArgs ?? []), main, mode],
    { env },
  );
  const finished = proc.exited.then((e) => ({ ...e, ms: performance.now() - spawnedAt }));
  return Object.assign(proc, { spawnedAt, finished });
}

/** Why the files in `mountPath` are not the expected ones, or undefined. */
export function filesProblem(mountPath: string, expected: Map<string, string>): string | undefined {
  const names = readdirSync(mountPath).filter((n) => !n.startsWith(".."));
  if (names.length !== expected.size) {
    return `${mountPath}: ${names.length} files, expected ${expected.size}`;
  }
  for (const [file, value] of expected) {
    let content: string;
    try {
      content = readFileSync(join(mountPath, file), "utf8");
    } catch {
      return `${mountPath}/${file} is missing`;
    }
    // Never print the value: only say that it differs.
    if (content !== value) return `${mountPath}/${file} does not hold the value written to OpenBao`;
  }
  return undefined;
}
