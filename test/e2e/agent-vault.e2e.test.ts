// The agent with the pod's own identity against a real API server and a real OpenBao (dev mode):
// a pod is created through the API server, mutated by our webhook (registered by the chart's
// MutatingWebhookConfiguration), and its agent containers are run exactly as stored, with a
// TokenRequest token for the pod's service account. OpenBao checks that token with TokenReview.
import { randomBytes } from "node:crypto";
import {
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createInjectedPod,
  ensureNamespace,
  preparePodVolumes,
  runAgentContainer,
  runToExit,
  startInjection,
  waitHealth,
  type AgentProcess,
  type InjectionStack,
  type PodVolumes,
} from "./harness/agent-runner.js";
import { startCluster, type Cluster } from "./harness/cluster.js";
import { assertNoLeaks, findOnDisk, tokenNeedles, type Needle } from "./harness/leaks.js";
import { startOpenBao, type OpenBao } from "./harness/openbao.js";
import { freePort, makeTempDir, sleep, teardownAll, waitFor } from "./harness/processes.js";

const NS = "agent-vault";
const FS_GROUP = 3000;
const REFRESH_SECONDS = 5;

const rand = (): string => randomBytes(12).toString("hex");

let cluster: Cluster;
let bao: OpenBao;
let stack: InjectionStack;
let reloadServer: Server | undefined;
let reloadPort: number;
const reloads: number[] = [];
const since = Date.now();
/** Values and tokens that must never leak, collected as the scenarios create them. */
const needles: Needle[] = [];
const agentLogs: Record<string, string> = {};

function podManifest(
  name: string,
  annotations: Record<string, string>,
  serviceAccount = "app",
): unknown {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: NS,
      annotations: {
        "dso.io/inject": "true",
        "dso.io/provider": "vault",
        "dso.io/vault-address": bao.address,
        ...annotations,
      },
    },
    spec: {
      serviceAccountName: serviceAccount,
      securityContext: { runAsNonRoot: true, runAsUser: 10001, fsGroup: FS_GROUP },
      containers: [{ name: "app", image: "registry.example.com/app:1.0" }],
    },
  };
}

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

beforeAll(async () => {
  cluster = await startCluster();
  [bao, stack] = await Promise.all([startOpenBao(), startInjection(cluster)]);
  await ensureNamespace(cluster, NS, ["app", "other"]);
  await bao.enableKubernetesAuth(cluster);
  await bao.enableAudit();
  await bao.ensureMount("kv1", "kv", { version: "1" });
  await bao.putPolicy(
    "app-read",
    `path "secret/data/app/*" { capabilities = ["read"] }
path "kv1/app/*" { capabilities = ["read"] }`,
  );
  await bao.kubernetesRole("app", {
    serviceAccounts: ["app"],
    namespaces: [NS],
    policies: ["app-read"],
    audience: "vault",
  });
  await bao.kubernetesRole("other-role", {
    serviceAccounts: ["other"],
    namespaces: [NS],
    policies: ["app-read"],
    audience: "vault",
  });
  reloadPort = await freePort();
  const srv = createServer((req, res) => {
    if (req.method === "POST" && req.url === "/reload") reloads.push(Date.now());
    req.resume();
    res.writeHead(204).end();
  });
  reloadServer = srv;
  await new Promise<void>((r) => srv.listen(reloadPort, "127.0.0.1", r));
});

afterAll(async () => {
  const srv = reloadServer;
  if (srv !== undefined)
    await new Promise<void>((r) =>
      srv.close(() => {
        r();
      }),
    );
  await teardownAll();
});

interface Pair {
  n: number;
  username: string;
  password: string;
}
const pair = (n: number): Pair => ({
  n,
  username: `user-${n}-${rand()}`,
  password: `pw-${n}-${rand()}`,
});

function addNeedles(p: Pair): void {
  needles.push(
    { label: `username v${p.n}`, value: p.username },
    { label: `password v${p.n}`, value: p.password },
  );
}

function stateAccessor(vols: PodVolumes): string | undefined {
  const state = JSON.parse(
    readFileSync(join(vols.dir("dso-agent-state"), "agent-state.json"), "utf8"),
  ) as { providers: { vault?: { token?: { accessor?: string } } } };
  return state.providers.vault?.token?.accessor;
}

/** The agent's Vault token, read from the state hand-off (in memory): a needle for the leak checks. */
function agentTokenNeedles(vols: PodVolumes): Needle[] {
  const state = JSON.parse(
    readFileSync(join(vols.dir("dso-agent-state"), "agent-state.json"), "utf8"),
  ) as {
    providers: { vault?: { token?: { token?: string; accessor?: string } } };
  };
  const t = state.providers.vault?.token;
  if (t?.token === undefined) throw new Error("the state hand-off has no Vault token");
  return [{ label: "agent Vault token", value: t.token }];
}

function loginCount(): number {
  return bao.loginCount("auth/kubernetes/login");
}

describe("agent with the pod's identity against OpenBao", () => {
  let vols: PodVolumes;
  let sidecar: AgentProcess | undefined;
  let current: Pair;
  const legacy = { token: `legacy-${rand()}`, endpoint: "https://legacy.example.com" };
  const apiKey = `key-${rand()}`;

  it("the leak scan finds a value written to disk (positive control)", async () => {
    const dir = makeTempDir("dso-e2e-canary");
    const canary = { label: "canary", value: `canary-${rand()}` };
    writeFileSync(join(dir, "canary.txt"), `x ${canary.value} y`);
    const hits = await findOnDisk([canary], { since });
    rmSync(dir, { recursive: true, force: true });
    expect(hits).toEqual([`${join(dir, "canary.txt")}: canary`]);
  });

  it("init: Kubernetes auth, KV v1 and v2 files with the right contents, modes and group; templates render", async () => {
    current = pair(1);
    addNeedles(current);
    needles.push(
      { label: "KV v1 token", value: legacy.token },
      { label: "API key", value: apiKey },
    );
    await bao.kv2Put("secret", "app/db", { ...current, n: current.n });
    await bao.kv1Put("kv1", "app/legacy", legacy);
    await bao.kv2Put("secret", "app/api", { key: apiKey });
    const pod = await createInjectedPod(
      cluster,
      podManifest("app-kv", {
        "dso.io/vault-role": "app",
        "dso.io/secret-username": "secret/data/app/db#username",
        "dso.io/secret-password": "secret/data/app/db#password",
        // Same path as username/password: one read, so one generation holds all three consistent.
        "dso.io/secret-pair.txt": "secret/data/app/db",
        // KV v2 without data/: the agent detects the mount's version.
        "dso.io/secret-api-key": "secret/app/api#key",
        "dso.io/template-pair.txt": "{{n}} {{username}} {{password}}\n",
        "dso.io/secret-legacy-token": "kv1/app/legacy#token",
        "dso.io/secret-legacy.json": "kv1/app/legacy",
        "dso.io/secret-app.env": "kv1/app/legacy",
        "dso.io/template-app.env": "LEGACY_ENDPOINT={{endpoint}}\nLEGACY_TOKEN={{token}}\n",
        "dso.io/refresh": `${REFRESH_SECONDS}s`,
        "dso.io/on-change": `http://127.0.0.1:${reloadPort}/reload`,
      }),
    );
    expect(pod.spec.initContainers?.map((c) => c.name)).toEqual(["dso-agent-init", "dso-agent"]);
    vols = await preparePodVolumes(cluster, pod);
    for (const t of vols.tokens) needles.push(...tokenNeedles("pod service-account token", t));

    const init = await runToExit(vols, "dso-agent-init", 60_000);
    agentLogs["app-kv init"] = init.logs;
    expect(init.exit.code, init.logs).toBe(0);
    needles.push(...agentTokenNeedles(vols));

    const dir = vols.dir("dso-secrets");
    const read = (f: string): string => readFileSync(join(dir, f), "utf8");
    expect(read("username")).toBe(current.username);
    expect(read("password")).toBe(current.password);
    expect(read("pair.txt")).toBe(`1 ${current.username} ${current.password}\n`);
    expect(read("api-key")).toBe(apiKey);
    expect(read("legacy-token")).toBe(legacy.token);
    expect(JSON.parse(read("legacy.json"))).toEqual(legacy);
    expect(read("app.env")).toBe(
      `LEGACY_ENDPOINT=${legacy.endpoint}\nLEGACY_TOKEN=${legacy.token}\n`,
    );
    for (const f of [
      "username",
      "password",
      "pair.txt",
      "api-key",
      "legacy-token",
      "legacy.json",
      "app.env",
    ]) {
      expect(lstatSync(join(dir, f)).isSymbolicLink()).toBe(true);
      const st = statSync(join(dir, f));
      expect({ file: f, mode: st.mode & 0o7777, gid: st.gid, uid: st.uid }).toEqual({
        file: f,
        mode: 0o440,
        gid: FS_GROUP,
        uid: 65532,
      });
    }
    expect(loginCount()).toBe(1);
    await checkLeaks();
  });

  it("sidecar: continues from the init container's state (one login), refreshes atomically, on-change fires once per change", async () => {
    const initAccessor = stateAccessor(vols);
    expect(initAccessor).toMatch(/^\S{8,}$/);
    sidecar = runAgentContainer(vols, "dso-agent");
    const health = await waitHealth(
      stack.telemetryPort,
      (h) => h.status === 200,
      "the sidecar's /healthz to return 200",
      30_000,
      [sidecar],
    );
    expect(health.body).toBe("ok\n");
    expect(sidecar.logs()).toContain("continuing from the init container's state");
    // Leaks in the live process: environment and argv of the running agent.
    await checkLeaks({ sidecar: sidecar.pid });

    const dir = vols.dir("dso-secrets");
    const seen = new Set<string>();
    const problems: string[] = [];
    const reader$ = { reading: true };
    // The "application": reads the files as fast as it can while the secret changes. Every read
    // must see one complete version, and one generation must hold matching files.
    const reader = (async () => {
      let reads = 0;
      while (reader$.reading) {
        try {
          const gen = readlinkSync(join(dir, "..data"));
          const u = readFileSync(join(dir, gen, "username"), "utf8");
          const p = readFileSync(join(dir, gen, "password"), "utf8");
          const line = readFileSync(join(dir, gen, "pair.txt"), "utf8");
          const [n, lu, lp] = line.trimEnd().split(" ");
          if (u.split("-")[1] !== p.split("-")[1] || line.split(" ")[0] !== p.split("-")[1])
            problems.push(
              `generation ${gen} mixes username v${u.split("-")[1]} with password v${p.split("-")[1]}`,
            );
          if (
            lu === undefined ||
            lp === undefined ||
            lu.split("-")[1] !== n ||
            lp.split("-")[1] !== n ||
            !line.endsWith("\n")
          ) {
            problems.push(`pair.txt is partial or mixed (${line.length} bytes)`);
          }
          seen.add(n ?? "?");
          // And a reader that opens the file names directly sees one complete version.
          const direct = readFileSync(join(dir, "password"), "utf8");
          if (!/^pw-\d+-[0-9a-f]{24}$/.test(direct))
            problems.push(`password file is partial (${direct.length} bytes)`);
        } catch (err) {
          // The previous generation may be removed between readlink and open; that is a retry,
          // not a torn read. Anything else is a problem.
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") problems.push(String(err));
        }
        reads += 1;
        if (reads % 50 === 0) await sleep(1);
      }
      return reads;
    })();

    const before = reloads.length;
    for (const n of [2, 3]) {
      const next = pair(n);
      addNeedles(next);
      const written = Date.now();
      await bao.kv2Put("secret", "app/db", { ...next, n });
      await waitFor(() => readFileSync(join(dir, "password"), "utf8") === next.password, {
        timeoutMs: REFRESH_SECONDS * 1100 + 3_000,
        what: `the password file to change to version ${n} within the refresh interval (${REFRESH_SECONDS}s ±10%)`,
        processes: [sidecar],
        intervalMs: 50,
      });
      const took = Date.now() - written;
      expect(took).toBeLessThan(REFRESH_SECONDS * 1100 + 1_500);
      await waitFor(() => reloads.length - before === n - 1, {
        timeoutMs: 6_000,
        what: `the on-change POST for version ${n}`,
        processes: [sidecar],
      });
      current = next;
    }
    // Unchanged refreshes must not fire the action again.
    await sleep(REFRESH_SECONDS * 1100 + 500);
    reader$.reading = false;
    const reads = await reader;
    expect(problems).toEqual([]);
    expect(reads).toBeGreaterThan(100);
    expect([...seen].sort()).toEqual(["1", "2", "3"]);
    expect(reloads.length - before).toBe(2);
    // Still the init container's login: the sidecar never logged in, and the state it rewrote
    // after each change holds the init container's token (same accessor).
    expect(loginCount()).toBe(1);
    expect(stateAccessor(vols)).toBe(initAccessor);
    expect(readFileSync(join(dir, "username"), "utf8")).toBe(current.username);
    await checkLeaks({ sidecar: sidecar.pid });
    await sidecar.stop();
    agentLogs["app-kv sidecar"] = sidecar.logs();
    expect(sidecar.logs()).toContain('"msg":"stopped"');
    await checkLeaks();
  });

  it("a role bound to another service account is refused with a message naming the role and identity", async () => {
    const pod = await createInjectedPod(
      cluster,
      podManifest("app-wrong-role", {
        "dso.io/vault-role": "other-role",
        "dso.io/secret-username": "secret/data/app/db#username",
      }),
    );
    const v = await preparePodVolumes(cluster, pod);
    for (const t of v.tokens)
      needles.push(...tokenNeedles("pod service-account token (wrong role)", t));
    // No annotation or policy field sets the init deadline: the runner adds DSO_INIT_TIMEOUT.
    const init = await runToExit(v, "dso-agent-init", 40_000, {
      extraEnv: { DSO_INIT_TIMEOUT: "8" },
    });
    agentLogs["app-wrong-role init"] = init.logs;
    expect(init.exit.code).toBe(1);
    expect(init.ms).toBeLessThan(25_000);
    const last = init.logs.split("\n").find((l) => l.startsWith("dso-agent: ")) ?? init.logs;
    expect(last).toContain('role "other-role"');
    expect(last).toContain(`service account "${NS}/app"`);
    expect(last).toContain("Vault refused login (HTTP 403)");
    expect(readdirSync(v.dir("dso-secrets"))).toEqual([]);
    await checkLeaks();
  }, 60_000);
});
