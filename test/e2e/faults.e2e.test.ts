// Faults, against a non-dev OpenBao with file storage and TLS from our own CA (dev mode forgets
// everything on restart, so "recovery after restart" needs real storage; the harness initialises
// and unseals it). The agent trusts it through dso.io/vault-ca-configmap: the runner materialises
// that ConfigMap volume from the API server.
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createInjectedPod,
  ensureNamespace,
  preparePodVolumes,
  runAgentContainer,
  runToExit,
  sidecarHealth,
  startInjection,
  waitHealth,
  type AgentProcess,
  type InjectionStack,
  type PodVolumes,
} from "./harness/agent-runner.js";
import { startCluster, type Cluster } from "./harness/cluster.js";
import { assertNoLeaks, tokenNeedles, type Needle } from "./harness/leaks.js";
import { startOpenBao, type OpenBao } from "./harness/openbao.js";
import { freePort, teardownAll, waitFor } from "./harness/processes.js";

const NS = "faults";
const REFRESH_SECONDS = 5;
const rand = (): string => randomBytes(12).toString("hex");

let cluster: Cluster;
let bao: OpenBao;
let stack: InjectionStack;
const since = Date.now();
const needles: Needle[] = [];
const agentLogs: Record<string, string> = {};

async function checkLeaks(pids: Record<string, number> = {}): Promise<void> {
  await assertNoLeaks({
    needles,
    logs: { webhook: stack.webhook.logs(), openbao: bao.logs(), ...agentLogs },
    pids,
    cluster,
    namespaces: [NS],
    since,
  });
}

function pod(name: string, annotations: Record<string, string>): unknown {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: NS,
      annotations: {
        "dso.io/inject": "true",
        "dso.io/provider": "vault",
        "dso.io/vault-role": "app",
        ...annotations,
      },
    },
    spec: {
      serviceAccountName: "app",
      securityContext: { runAsNonRoot: true, runAsUser: 10001 },
      containers: [{ name: "app", image: "registry.example.com/app:1.0" }],
    },
  };
}

function loginCount(): number {
  return bao.loginCount("auth/kubernetes/login");
}

function stateToken(vols: PodVolumes): { token: string; accessor: string } {
  const s = JSON.parse(
    readFileSync(join(vols.dir("dso-agent-state"), "agent-state.json"), "utf8"),
  ) as {
    providers: { vault: { token: { token: string; accessor: string } } };
  };
  return s.providers.vault.token;
}

async function putPassword(label: string): Promise<string> {
  const password = `pw-${label}-${rand()}`;
  needles.push({ label: `password ${label}`, value: password });
  await bao.kv2Put("secret", "app/db", { password });
  return password;
}

beforeAll(async () => {
  cluster = await startCluster();
  if (cluster.pki === undefined)
    throw new Error("the faults test needs the suite's own cluster CA");
  [bao, stack] = await Promise.all([
    startOpenBao({ tlsPki: cluster.pki }),
    startInjection(cluster),
  ]);
  await ensureNamespace(cluster, NS, ["app"]);
  await cluster.kubectlOk([
    "create",
    "configmap",
    "vault-ca",
    "-n",
    NS,
    `--from-file=ca.crt=${cluster.pki.caCert}`,
  ]);
  await bao.enableKubernetesAuth(cluster);
  await bao.enableAudit();
  await bao.ensureMount("secret", "kv", { version: "2" });
  await bao.putPolicy("app-read", `path "secret/data/app/*" { capabilities = ["read"] }`);
  await bao.kubernetesRole("app", {
    serviceAccounts: ["app"],
    namespaces: [NS],
    policies: ["app-read"],
    audience: "vault",
  });
});

afterAll(async () => {
  await teardownAll();
});

describe("faults", () => {
  let vols: PodVolumes;
  let sidecar: AgentProcess;
  let password: string;

  it("TLS: the agent verifies OpenBao with the CA from dso.io/vault-ca-configmap", async () => {
    expect(bao.address).toMatch(/^https:/);
    password = await putPassword("v1");
    const created = await createInjectedPod(
      cluster,
      pod("app-tls", {
        "dso.io/vault-address": bao.address,
        "dso.io/vault-ca-configmap": "vault-ca",
        "dso.io/secret-password": "secret/data/app/db#password",
        "dso.io/refresh": `${REFRESH_SECONDS}s`,
      }),
    );
    expect(created.spec.volumes?.find((v) => v.name === "dso-vault-ca")?.configMap?.name).toBe(
      "vault-ca",
    );
    vols = await preparePodVolumes(cluster, created);
    for (const t of vols.tokens) needles.push(...tokenNeedles("pod service-account token", t));
    const init = await runToExit(vols, "dso-agent-init", 60_000);
    agentLogs.init = init.logs;
    expect(init.exit.code, init.logs).toBe(0);
    expect(readFileSync(join(vols.dir("dso-secrets"), "password"), "utf8")).toBe(password);
    // No fsGroup in this pod: the files' group is the policy's agent.filesGroup (65532), which the
    // webhook added to the pod's supplementalGroups so the app container can read them.
    const st = statSync(join(vols.dir("dso-secrets"), "password"));
    expect({ mode: st.mode & 0o7777, gid: st.gid }).toEqual({ mode: 0o440, gid: 65532 });
    expect(created.spec.securityContext?.supplementalGroups).toContain(65532);
    needles.push({ label: "agent Vault token (init)", value: stateToken(vols).token });
    await checkLeaks();
  });

  it("TLS without the CA ConfigMap: the agent refuses OpenBao's certificate (verification is on)", async () => {
    const created = await createInjectedPod(
      cluster,
      pod("app-no-ca", {
        "dso.io/vault-address": bao.address,
        "dso.io/secret-password": "secret/data/app/db#password",
      }),
    );
    const v = await preparePodVolumes(cluster, created);
    for (const t of v.tokens) needles.push(...tokenNeedles("pod service-account token (no CA)", t));
    // No annotation or policy field sets the init deadline: the runner adds DSO_INIT_TIMEOUT.
    const init = await runToExit(v, "dso-agent-init", 40_000, {
      extraEnv: { DSO_INIT_TIMEOUT: "4" },
    });
    agentLogs["no-ca"] = init.logs;
    expect(init.exit.code).toBe(1);
    const message = init.logs.split("\n").find((l) => l.startsWith("dso-agent: ")) ?? init.logs;
    expect(message).toContain(bao.address);
    expect(message).toMatch(/certificate/i);
    expect(readdirSync(v.dir("dso-secrets"))).toEqual([]);
    await checkLeaks();
  }, 60_000);

  it("OpenBao stopped while the sidecar runs: files stay, /healthz reports it, recovery after restart without restarting the agent", async () => {
    sidecar = runAgentContainer(vols, "dso-agent");
    await waitHealth(
      stack.telemetryPort,
      (h) => h.status === 200,
      "the sidecar's /healthz to return 200",
      30_000,
      [sidecar],
    );
    const pid = sidecar.pid;
    await bao.stop();
    const down = await waitHealth(
      stack.telemetryPort,
      (h) => h.status === 503,
      "the sidecar's /healthz to report 503 while OpenBao is down",
      REFRESH_SECONDS * 1100 + 15_000,
      [sidecar],
    );
    expect(down.body).toContain("vault:secret/data/app/db (file password)");
    expect(down.body).toContain(`Vault is unreachable`);
    expect(down.body).toContain(bao.address);
    // The last good file stays in place.
    expect(readFileSync(join(vols.dir("dso-secrets"), "password"), "utf8")).toBe(password);

    await bao.start();
    password = await putPassword("v2");
    await waitFor(
      () => readFileSync(join(vols.dir("dso-secrets"), "password"), "utf8") === password,
      {
        timeoutMs: 40_000,
        what: "the sidecar to read the secret again after OpenBao came back",
        processes: [sidecar],
      },
    );
    await waitHealth(
      stack.telemetryPort,
      (h) => h.status === 200,
      "the sidecar's /healthz to return 200 after recovery",
      10_000,
      [sidecar],
    );
    expect(sidecar.hasExited()).toBe(false);
    expect(sidecar.pid).toBe(pid);
    // The handed-over token survived the restart (real storage): still the init container's login.
    expect(loginCount()).toBe(1);
    await checkLeaks({ sidecar: sidecar.pid });
  });

  it("the token revoked: the agent logs in again and keeps the files fresh", async () => {
    const before = stateToken(vols);
    const revoked = await bao.bao(["token", "revoke", "-accessor", before.accessor]);
    expect(revoked.code, revoked.stderr).toBe(0);
    password = await putPassword("v3");
    await waitFor(
      () => readFileSync(join(vols.dir("dso-secrets"), "password"), "utf8") === password,
      {
        timeoutMs: REFRESH_SECONDS * 1100 + 15_000,
        what: "the sidecar to log in again and read the new version after its token was revoked",
        processes: [sidecar],
      },
    );
    expect(loginCount()).toBe(2);
    const after = await waitFor(
      () => {
        const t = stateToken(vols);
        return t.accessor !== before.accessor ? t : undefined;
      },
      { timeoutMs: 5_000, what: "the hand-off state to hold the new token" },
    );
    needles.push({ label: "agent Vault token (after re-login)", value: after.token });
    expect((await sidecarHealth(stack.telemetryPort)).status).toBe(200);
    await checkLeaks({ sidecar: sidecar.pid });
    await sidecar.stop();
    agentLogs.sidecar = sidecar.logs();
    await checkLeaks();
  });

  it("the backend unreachable at init: bounded retries, then a non-zero exit naming the address", async () => {
    const port = await freePort();
    const address = `https://127.0.0.1:${port}`;
    const created = await createInjectedPod(
      cluster,
      pod("app-unreachable", {
        "dso.io/vault-address": address,
        "dso.io/vault-ca-configmap": "vault-ca",
        "dso.io/secret-password": "secret/data/app/db#password",
      }),
    );
    const v = await preparePodVolumes(cluster, created);
    for (const t of v.tokens)
      needles.push(...tokenNeedles("pod service-account token (unreachable)", t));
    // No annotation or policy field sets the init deadline: the runner adds DSO_INIT_TIMEOUT.
    const init = await runToExit(v, "dso-agent-init", 40_000, {
      extraEnv: { DSO_INIT_TIMEOUT: "6" },
    });
    agentLogs.unreachable = init.logs;
    expect(init.exit.code).toBe(1);
    expect(init.ms).toBeLessThan(20_000);
    const retries = init.logs
      .split("\n")
      .filter((l) => l.includes('"msg":"could not read secret"')).length;
    expect(retries).toBeGreaterThanOrEqual(2);
    expect(retries).toBeLessThanOrEqual(6);
    const message = init.logs.split("\n").find((l) => l.startsWith("dso-agent: ")) ?? init.logs;
    expect(message).toContain(address);
    expect(message).toContain("unreachable");
    expect(message).toMatch(/after \d+ attempts in 6s/);
    await checkLeaks();
  }, 60_000);
});
