// The examples under examples/, as a user runs them, against the real servers:
// - every Kubernetes manifest (the same selection as test/examples/examples.test.ts: not
//   `before-*`, `agent*.yaml`, `compose.yaml`) is applied with kubectl, one example directory at
//   a time, with the webhook and the chart's MutatingWebhookConfiguration registered; the pods
//   the controllers make (Deployment → ReplicaSet → pods, Job → pods, CronJob → `kubectl create
//   job --from=cronjob/…` → pods) are stored injected;
// - vault-kv and vault-dynamic-postgres: the Vault side is set up by the example's own
//   vault-setup.sh (with `bao`) against a local OpenBao, the manifest is applied with only
//   `dso.io/vault-address` rewritten, and the stored pod's `dso-agent-init` (agent-runner.ts)
//   renders the files;
// - docker-compose/vault-approle: vault-setup.sh creates the AppRole, and compose.yaml's
//   `dso-init` (`render`) then `dso-agent` (`sidecar`) commands run on the agent image's
//   entrypoint with agent.yaml (address and telemetry port rewritten) and Compose's mounts.
// The Azure examples need Azure (or Lowkey Vault, not obtainable here): only their injection is
// checked.
import { chownSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments, stringify } from "yaml";
import { repoRoot } from "./global-setup.js";
import {
  getPod,
  preparePodVolumes,
  runToExit,
  startInjection,
  type InjectionStack,
  type Pod,
} from "./harness/agent-runner.js";
import { startCluster, type Cluster } from "./harness/cluster.js";
import { imageRuntime } from "./harness/image.js";
import { spawnImage, volumeDir } from "./harness/image-process.js";
import { startOpenBao, type OpenBao } from "./harness/openbao.js";
import { startPostgres, type Postgres } from "./harness/postgres.js";
import { freePort, makeTempDir, run, waitFor } from "./harness/processes.js";

const EXAMPLES = join(repoRoot, "examples");

interface Doc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string };
  spec?: Record<string, unknown>;
}

interface Template {
  metadata?: { annotations?: Record<string, string> };
}

/** Where each workload kind keeps its pod template. */
function templateOf(doc: Doc): Template | undefined {
  const spec = doc.spec as
    | {
        template?: Template;
        jobTemplate?: { spec?: { template?: Template } };
      }
    | undefined;
  if (doc.kind === "Pod") return doc as Template;
  if (doc.kind === "CronJob") return spec?.jobTemplate?.spec?.template;
  if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(doc.kind))
    return spec?.template;
  return undefined;
}

const isManifest = (f: string): boolean =>
  /\.ya?ml$/.test(f) &&
  !/^agent.*\.ya?ml$/.test(basename(f)) &&
  !/^(docker-)?compose\.ya?ml$/.test(basename(f)) &&
  !basename(f).startsWith("before-");

function filesOf(dir: string): string[] {
  return readdirSync(join(EXAMPLES, dir), { recursive: true, encoding: "utf8" })
    .filter((f) => !f.split("/").some((p) => p.startsWith(".")))
    .filter((f) => statSync(join(EXAMPLES, dir, f)).isFile())
    .sort();
}

const exampleDirs = readdirSync(EXAMPLES)
  .filter((d) => statSync(join(EXAMPLES, d)).isDirectory())
  .sort();
const manifestDirs = exampleDirs
  .map((dir) => ({ dir, files: filesOf(dir).filter(isManifest) }))
  .filter((e) => e.files.length > 0);

function docsOf(text: string): Doc[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Doc | null)
    .filter((d): d is Doc => d !== null);
}

/** Examples whose Vault side the test sets up, with only the Vault address rewritten. */
const RENDERED = new Set(["vault-kv", "vault-dynamic-postgres"]);

let cluster: Cluster;
let bao: OpenBao;
let pg: Postgres;
let stack: InjectionStack;
let work: string;
let reviewerJwtFile: string;

/** The example's vault-setup.sh with the `bao` CLI, as its README says, against the local OpenBao. */
async function vaultSetup(
  script: string,
  opts: { cwd?: string; env?: Record<string, string>; input?: string } = {},
): Promise<string> {
  const bin = process.env.DSO_E2E_BAO ?? "";
  const r = await run("bash", [join(EXAMPLES, script)], {
    cwd: opts.cwd ?? work,
    input: opts.input,
    timeoutMs: 60_000,
    env: {
      PATH: `${dirname(process.env.DSO_E2E_OPENSSL ?? "/usr/bin/openssl")}:/usr/bin:/bin`,
      HOME: work,
      VAULT_CLI: bin,
      VAULT_ADDR: bao.address,
      BAO_ADDR: bao.address,
      VAULT_TOKEN: bao.rootToken,
      BAO_TOKEN: bao.rootToken,
      KUBERNETES_HOST: cluster.apiUrl,
      KUBERNETES_CA_FILE: cluster.caFile,
      TOKEN_REVIEWER_JWT_FILE: reviewerJwtFile,
      ...opts.env,
    },
  });
  if (r.code !== 0) throw new Error(`${script} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

beforeAll(async () => {
  cluster = await startCluster();
  [bao, pg, stack] = await Promise.all([startOpenBao(), startPostgres(), startInjection(cluster)]);
  work = makeTempDir("dso-e2e-examples");
  // OpenBao's TokenReview identity (service account bound to system:auth-delegator), as
  // vault-setup.sh wants it for a Vault outside the cluster.
  await bao.enableKubernetesAuth(cluster);
  reviewerJwtFile = join(work, "reviewer.jwt");
  writeFileSync(
    reviewerJwtFile,
    (
      await cluster.kubectlOk([
        "create",
        "token",
        "openbao-reviewer",
        "-n",
        "default",
        "--duration=1h",
      ])
    ).trim(),
    { mode: 0o600 },
  );
  // The API server loads the MutatingWebhookConfiguration asynchronously: pods a controller
  // creates before that would be stored without injection, so wait for a dry run to be injected.
  await waitFor(
    async () => {
      const r = await cluster.kubectl(["create", "--dry-run=server", "-o", "json", "-f", "-"], {
        input: JSON.stringify({
          apiVersion: "v1",
          kind: "Pod",
          metadata: {
            name: "probe",
            namespace: "default",
            annotations: {
              "dso.io/inject": "true",
              "dso.io/provider": "vault",
              "dso.io/vault-address": "https://vault.example.com:8200",
              "dso.io/vault-role": "probe",
              "dso.io/secret-x": "secret/data/x#y",
            },
          },
          spec: { containers: [{ name: "app", image: "registry.example.com/app:1" }] },
        }),
      });
      if (r.code !== 0) throw new Error(r.stderr);
      return (JSON.parse(r.stdout) as Pod).metadata.annotations?.["dso.io/injected"] === "true";
    },
    {
      timeoutMs: 20_000,
      what: "a server-side dry run of an annotated pod to come back injected",
      processes: [stack.webhook.process],
    },
  );
});

interface OwnedList {
  items: (Pod & { metadata: { ownerReferences?: { uid: string }[] } })[];
}

async function ownedBy(
  path: string,
  uid: string,
): Promise<(Pod & { metadata: { uid: string } })[]> {
  const list = await cluster.api<OwnedList>("GET", path);
  return list.items.filter((i) => i.metadata.ownerReferences?.some((o) => o.uid === uid));
}

/** The pods a workload's controller created (through the ReplicaSet for a Deployment). */
async function podsOf(doc: Doc, uid: string, want: number): Promise<Pod[]> {
  const ns = doc.metadata.namespace ?? "default";
  return waitFor(
    async () => {
      let owners = [uid];
      if (doc.kind === "Deployment") {
        const rs = await ownedBy(`/apis/apps/v1/namespaces/${ns}/replicasets`, uid);
        owners = rs.map((r) => r.metadata.uid);
      }
      const pods = (
        await Promise.all(owners.map((o) => ownedBy(`/api/v1/namespaces/${ns}/pods`, o)))
      ).flat();
      return pods.length >= want ? pods : undefined;
    },
    {
      timeoutMs: 45_000,
      what: `${want} pod(s) of ${doc.kind} ${ns}/${doc.metadata.name}`,
      processes: [...cluster.processes, stack.webhook.process],
    },
  );
}

function expectInjected(p: Pod, template: Template): void {
  const where = `pod ${p.metadata.namespace}/${p.metadata.name}`;
  expect(p.metadata.annotations?.["dso.io/injected"], where).toBe("true");
  const init = p.spec.initContainers ?? [];
  const names = init.map((c) => c.name);
  const initOnly = template.metadata?.annotations?.["dso.io/mode"] === "init-only";
  expect(names, where).toContain("dso-agent-init");
  if (initOnly) expect(names, where).not.toContain("dso-agent");
  else {
    expect(names, where).toContain("dso-agent");
    expect(init.find((c) => c.name === "dso-agent")?.restartPolicy, where).toBe("Always");
  }
  expect(p.spec.volumes?.find((v) => v.name === "dso-secrets")?.emptyDir?.medium, where).toBe(
    "Memory",
  );
}

/** Files a user applies for the example, supporting objects (ServiceAccounts, ConfigMaps) first. */
function applyOrder(dir: string, files: string[]): string[] {
  const hasWorkload = (f: string): boolean =>
    docsOf(readFileSync(join(EXAMPLES, dir, f), "utf8")).some((d) => templateOf(d) !== undefined);
  return [...files.filter((f) => !hasWorkload(f)), ...files.filter(hasWorkload)];
}

/** The manifest as the user applies it; for RENDERED examples only the Vault address changes. */
function manifestPath(dir: string, file: string): string {
  const src = join(EXAMPLES, dir, file);
  if (!RENDERED.has(dir)) return src;
  const text = readFileSync(src, "utf8");
  const rewritten = text.replace(
    /^(\s*dso\.io\/vault-address:\s*).*$/gm,
    (_m, key: string) => `${key}${bao.address}`,
  );
  expect(rewritten).not.toBe(text);
  const out = join(work, `${dir}-${basename(file)}`);
  writeFileSync(out, rewritten);
  return out;
}

describe.each(manifestDirs)("examples/$dir", ({ dir, files }) => {
  const ordered = (): string[] => applyOrder(dir, files);
  const paths: string[] = [];
  const extraJobs: { ns: string; name: string }[] = [];
  const podsByWorkload = new Map<string, Pod[]>();

  afterAll(async () => {
    // Examples share namespaces and names (orders/orders-api): remove this one's objects.
    for (const j of extraJobs) await cluster.kubectl(["delete", "job", j.name, "-n", j.ns]);
    if (paths.length > 0)
      await cluster.kubectl([
        "delete",
        "--wait=true",
        "--timeout=30s",
        ...paths.flatMap((p) => ["-f", p]),
      ]);
  });

  it(`kubectl apply of ${files.join(", ")}: every annotated workload's pods are stored injected`, async () => {
    const docs = files.flatMap((f) => docsOf(readFileSync(join(EXAMPLES, dir, f), "utf8")));
    for (const ns of new Set(docs.map((d) => d.metadata.namespace ?? "default"))) {
      const r = await cluster.kubectl(["create", "namespace", ns]);
      if (r.code !== 0 && !r.stderr.includes("AlreadyExists")) throw new Error(r.stderr);
    }
    for (const f of ordered()) paths.push(manifestPath(dir, f));
    const out = await cluster.kubectlOk(["apply", ...paths.flatMap((p) => ["-f", p])]);
    const workloads = docs.filter(
      (d) => templateOf(d)?.metadata?.annotations?.["dso.io/inject"] === "true",
    );
    expect(workloads.length, `annotated workloads in examples/${dir}`).toBeGreaterThan(0);

    for (const w of workloads) {
      const ns = w.metadata.namespace ?? "default";
      expect(out).toMatch(
        new RegExp(
          `^${w.kind.toLowerCase()}(\\.[a-z.]+)?/${w.metadata.name} (created|configured)$`,
          "m",
        ),
      );
      const stored = JSON.parse(
        await cluster.kubectlOk([
          "get",
          w.kind.toLowerCase(),
          w.metadata.name,
          "-n",
          ns,
          "-o",
          "json",
        ]),
      ) as Doc & { metadata: { uid: string } };
      let source: Doc = stored;
      let uid = stored.metadata.uid;
      let want = 1;
      if (w.kind === "Deployment") want = (w.spec as { replicas?: number }).replicas ?? 1;
      if (w.kind === "CronJob") {
        // Nothing runs until the schedule: a Job from its jobTemplate, as `kubectl create job --from`.
        const name = `${w.metadata.name}-e2e`;
        await cluster.kubectlOk([
          "create",
          "job",
          name,
          `--from=cronjob/${w.metadata.name}`,
          "-n",
          ns,
        ]);
        extraJobs.push({ ns, name });
        source = JSON.parse(
          await cluster.kubectlOk(["get", "job", name, "-n", ns, "-o", "json"]),
        ) as Doc & { metadata: { uid: string } };
        uid = source.metadata.uid ?? "";
      }
      const pods = await podsOf(source, uid, want);
      for (const p of pods) expectInjected(p, templateOf(w) ?? {});
      podsByWorkload.set(`${w.kind}/${w.metadata.name}`, pods);
    }
  });

  if (dir === "vault-kv") {
    it("vault-setup.sh against OpenBao, then the stored pod's dso-agent-init renders username, password and db.env", async () => {
      await vaultSetup("vault-kv/vault-setup.sh");
      const kv = await bao.api<{ data: { data: { username: string; password: string } } }>(
        "GET",
        "secret/data/orders/db",
      );
      const { username, password } = kv.data.data;
      const [first] = podsByWorkload.get("Deployment/orders-api") ?? [];
      expect(first).toBeDefined();
      const pod = await getPod(cluster, "orders", first?.metadata.name ?? "");
      const vols = await preparePodVolumes(cluster, pod);
      const { exit, logs } = await runToExit(vols, "dso-agent-init", 30_000);
      expect(exit.code, logs).toBe(0);
      const dirOut = vols.dir("dso-secrets");
      expect(readFileSync(join(dirOut, "username"), "utf8")).toBe(username);
      expect(readFileSync(join(dirOut, "password"), "utf8")).toBe(password);
      expect(readFileSync(join(dirOut, "db.env"), "utf8")).toBe(
        `DB_USER=${username}\nDB_PASSWORD=${password}\n`,
      );
      expect(logs).not.toContain(password);
    });
  }

  if (dir === "vault-dynamic-postgres") {
    it("vault-setup.sh with the local PostgreSQL, then dso-agent-init renders one login into db.conn and database-url", async () => {
      await pg.psql("CREATE DATABASE inventory");
      await vaultSetup("vault-dynamic-postgres/vault-setup.sh", {
        env: {
          PGHOST: "127.0.0.1",
          PGPORT: String(pg.port),
          PGDATABASE: "inventory",
          PGADMIN_USER: pg.superuser,
          PGSSLMODE: "disable",
        },
        input: pg.password,
      });
      const [first] = podsByWorkload.get("Deployment/inventory-api") ?? [];
      const pod = await getPod(cluster, "inventory", first?.metadata.name ?? "");
      const vols = await preparePodVolumes(cluster, pod);
      const { exit, logs } = await runToExit(vols, "dso-agent-init", 30_000);
      expect(exit.code, logs).toBe(0);
      const conn = readFileSync(join(vols.dir("dso-secrets"), "db.conn"), "utf8");
      const m =
        /^host=postgres\.inventory\.svc port=5432 dbname=inventory user=(\S+) password=(\S+) sslmode=require$/.exec(
          conn.trim(),
        );
      expect(m, conn.replace(/password=\S+/, "password=…")).not.toBeNull();
      const [, user = "", password = ""] = m ?? [];
      expect(readFileSync(join(vols.dir("dso-secrets"), "database-url"), "utf8")).toBe(
        `postgresql://${user}:${password}@postgres.inventory.svc:5432/inventory?sslmode=require`,
      );
      // The login is real: PostgreSQL (here on 127.0.0.1) accepts exactly these credentials.
      const login = await pg.psqlAs(user, password, "select current_user");
      expect(login.stdout.trim()).toBe(user);
      expect(logs).not.toContain(password);
    });
  }
});

/** Compose agent configurations by backend: Vault ones run here, Azure ones cannot (README). */
const composeConfigs = filesOf("docker-compose")
  .filter((f) => /^agent.*\.ya?ml$/.test(basename(f)))
  .map((f) => ({
    file: f,
    config: parse(readFileSync(join(EXAMPLES, "docker-compose", f), "utf8")) as Record<
      string,
      unknown
    >,
  }));
const vaultCompose = composeConfigs
  .filter((c) => c.config.vault !== undefined)
  .map((c) => dirname(c.file));

it("every Compose agent configuration is run here (Vault) or is the documented Azure exception", () => {
  expect(vaultCompose).toEqual(["vault-approle"]);
  expect(composeConfigs.filter((c) => c.config.vault === undefined).map((c) => c.file)).toEqual([
    "azure-managed-identity/agent.yaml",
  ]);
});

describe.each(vaultCompose)(
  "examples/docker-compose/%s (the agent image with Compose's commands and mounts)",
  (composeDir) => {
    it("vault-setup.sh makes the AppRole; dso-init renders the files; dso-agent continues from its state", async () => {
      const exampleDir = join(EXAMPLES, "docker-compose", composeDir);
      const compose = parse(readFileSync(join(exampleDir, "compose.yaml"), "utf8")) as {
        "x-dso-agent": { user: string };
        services: Record<string, { command: string[] }>;
      };
      const agent = parse(readFileSync(join(exampleDir, "agent.yaml"), "utf8")) as {
        mountPath: string;
        statePath: string;
        telemetryPort: number;
        vault: { addresses: string[]; roleIdFile: string; secretIdFile: string };
      };
      const rt = imageRuntime("agent");
      // Compose runs the agent as the image's user (and the README's chown is for that UID).
      expect(compose["x-dso-agent"].user).toBe(`${rt.uid}:${rt.gid}`);

      // The README: `cd examples/docker-compose/vault-approle && VAULT_CLI=bao ./vault-setup.sh`
      // writes ./role-id and ./secret-id; here in a scratch directory.
      const setupDir = makeTempDir("dso-e2e-compose-setup");
      await vaultSetup(`docker-compose/${composeDir}/vault-setup.sh`, { cwd: setupDir });
      const stored = await bao.api<{ data: { data: { username: string; password: string } } }>(
        "GET",
        "secret/data/orders/db",
      );
      const { username, password } = stored.data.data;

      // Compose's volumes: agent.yaml read-only at /etc/dso, the Docker secrets under /run/secrets
      // (owned by 65532, the README's chown), the two host directories under /run (tmpfs here).
      const root = makeTempDir("dso-e2e-compose", "/dev/shm");
      const telemetryPort = await freePort();
      const config = volumeDir(root, "config", 0o755, 0, 0);
      writeFileSync(
        join(config, "agent.yaml"),
        stringify({
          ...agent,
          // Rewritten: the Vault address, and the telemetry port (8099 may be taken on this host).
          vault: { ...agent.vault, addresses: [bao.address] },
          telemetryPort,
        }),
      );
      const secrets = volumeDir(root, "docker-secrets", 0o755, 0, 0);
      for (const [from, to] of [
        ["role-id", basename(agent.vault.roleIdFile)],
        ["secret-id", basename(agent.vault.secretIdFile)],
      ] as const) {
        writeFileSync(join(secrets, to), readFileSync(join(setupDir, from)), { mode: 0o400 });
        chownSync(join(secrets, to), rt.uid, rt.gid);
      }
      const files = volumeDir(root, "secrets", 0o750, rt.uid, rt.gid);
      const state = volumeDir(root, "state", 0o700, rt.uid, rt.gid);
      const mounts = [
        { source: config, target: "/etc/dso", readOnly: true },
        { source: secrets, target: dirname(agent.vault.roleIdFile), readOnly: true },
        { source: files, target: agent.mountPath },
        { source: state, target: agent.statePath },
      ];

      const logins = (): number => bao.loginCount("auth/approle/login");
      await bao.enableAudit();
      const before = logins();

      const command = (service: string): string[] => {
        const c = compose.services[service]?.command;
        if (c === undefined) throw new Error(`compose.yaml: no command for service ${service}`);
        return c;
      };
      const init = spawnImage("agent", {
        name: "compose.dso-init",
        args: command("dso-init"),
        mounts,
      });
      const exit = await Promise.race([
        init.exited,
        new Promise<undefined>((r) => {
          setTimeout(() => {
            r(undefined);
          }, 60_000).unref();
        }),
      ]);
      expect(exit?.code, init.logs()).toBe(0);
      expect(readFileSync(join(files, "db.env"), "utf8")).toBe(
        `DB_USER=${username}\nDB_PASSWORD=${password}\n`,
      );
      expect(readFileSync(join(files, "password"), "utf8")).toBe(password);
      for (const f of ["db.env", "password"]) {
        // The README: mode 0440, group 65532 (the app joins it with group_add).
        const st = statSync(join(files, f));
        expect(st.mode & 0o777, f).toBe(0o440);
        expect(st.gid, f).toBe(65532);
      }
      await waitFor(() => logins() - before === 1, {
        timeoutMs: 5_000,
        what: "one AppRole login in the audit log after dso-init",
      });

      const sidecar = spawnImage("agent", {
        name: "compose.dso-agent",
        args: command("dso-agent"),
        mounts,
      });
      await waitFor(
        async () => {
          const r = await fetch(`http://127.0.0.1:${telemetryPort}/healthz`, {
            signal: AbortSignal.timeout(2_000),
          });
          return r.status === 200;
        },
        {
          timeoutMs: 20_000,
          what: "the dso-agent service's /healthz (compose healthcheck) to answer 200",
          processes: [sidecar],
        },
      );
      expect(sidecar.logs()).toContain("continuing from the init container's state");
      // It took over dso-init's token: still one login.
      expect(logins() - before).toBe(1);
      const stopped = await sidecar.stop(10_000);
      expect(stopped.code, sidecar.logs()).toBe(0);
      for (const logs of [init.logs(), sidecar.logs()]) {
        expect(logs).not.toContain(password);
        expect(logs).not.toContain(readFileSync(join(setupDir, "secret-id"), "utf8").trim());
      }
    });
  },
);
