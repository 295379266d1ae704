// Dynamic secrets: PostgreSQL credentials from OpenBao's database engine, rendered into a
// connection string; the application logs in with them; the sidecar renews the init container's
// lease (one set of credentials per pod, one login); with the policy's revokeOnShutdown the lease
// is revoked when the sidecar stops (the role disappears from PostgreSQL).
import { readFileSync } from "node:fs";
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
  type InjectionStack,
} from "./harness/agent-runner.js";
import { startCluster, type Cluster } from "./harness/cluster.js";
import { assertNoLeaks, tokenNeedles, type Needle } from "./harness/leaks.js";
import { startOpenBao, type OpenBao } from "./harness/openbao.js";
import { startPostgres, type Postgres } from "./harness/postgres.js";
import { teardownAll, waitFor } from "./harness/processes.js";

const NS = "dynamic";
const DEFAULT_TTL = 20;
const MAX_TTL = 60;

let cluster: Cluster;
let bao: OpenBao;
let pg: Postgres;
let stack: InjectionStack;
const since = Date.now();

beforeAll(async () => {
  cluster = await startCluster();
  [bao, pg, stack] = await Promise.all([
    startOpenBao(),
    startPostgres(),
    startInjection(cluster, { revokeOnShutdown: true }),
  ]);
  await ensureNamespace(cluster, NS, ["orders"]);
  await bao.enableKubernetesAuth(cluster);
  await bao.enableAudit();
  await bao.ensureMount("database", "database");
  await bao.api("POST", "database/config/orders-db", {
    plugin_name: "postgresql-database-plugin",
    connection_url: `postgresql://{{username}}:{{password}}@127.0.0.1:${pg.port}/postgres?sslmode=disable`,
    username: pg.superuser,
    password: pg.password,
    allowed_roles: ["orders"],
  });
  await bao.api("POST", "database/roles/orders", {
    db_name: "orders-db",
    creation_statements: [
      `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
      `GRANT pg_read_all_data TO "{{name}}";`,
    ],
    default_ttl: `${DEFAULT_TTL}s`,
    max_ttl: `${MAX_TTL}s`,
  });
  await bao.putPolicy("orders-db", `path "database/creds/orders" { capabilities = ["read"] }`);
  await bao.kubernetesRole("orders", {
    serviceAccounts: ["orders"],
    namespaces: [NS],
    policies: ["orders-db"],
    audience: "vault",
  });
  await bao.putPolicy("lease-revoke", `path "sys/leases/revoke" { capabilities = ["update"] }`);
  await bao.kubernetesRole("orders-revoker", {
    serviceAccounts: ["orders"],
    namespaces: [NS],
    policies: ["orders-db", "lease-revoke"],
    audience: "vault",
  });
});

afterAll(async () => {
  await teardownAll();
});

/** Roles OpenBao's database engine created (its default username template starts with "v-"). */
async function vaultRoles(): Promise<string[]> {
  const out = await pg.psql(`select rolname from pg_roles where rolname like 'v-%' order by 1`);
  return out === "" ? [] : out.split("\n");
}

function loginCount(): number {
  return bao.loginCount("auth/kubernetes/login");
}

function leaseRenewals(): number {
  return bao
    .auditEntries()
    .filter(
      (e) =>
        e.type === "response" && e.request?.path === "sys/leases/renew" && e.error === undefined,
    ).length;
}

function ordersPod(name: string, role: string): unknown {
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
        "dso.io/vault-role": role,
        "dso.io/secret-db.url": "database/creds/orders",
        "dso.io/template-db.url": `postgresql://{{username}}:{{password}}@127.0.0.1:${pg.port}/postgres`,
        "dso.io/secret-db.json": "database/creds/orders",
      },
    },
    spec: {
      serviceAccountName: "orders",
      securityContext: { runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001 },
      containers: [{ name: "orders", image: "registry.example.com/orders:1.0" }],
    },
  };
}

describe("dynamic database credentials", () => {
  it("the app logs in with the rendered credentials; the sidecar renews the init container's lease; revoke on shutdown drops the role", async () => {
    const needles: Needle[] = [];
    const pod = await createInjectedPod(cluster, ordersPod("orders-0", "orders"));
    const vols = await preparePodVolumes(cluster, pod);
    for (const t of vols.tokens) needles.push(...tokenNeedles("pod service-account token", t));
    const logs: Record<string, string> = {};
    const check = async (pids: Record<string, number> = {}): Promise<void> => {
      await assertNoLeaks({
        needles,
        logs: { webhook: stack.webhook.logs(), openbao: bao.logs(), postgres: pg.logs(), ...logs },
        pids,
        cluster,
        namespaces: [NS],
        since,
      });
    };

    const init = await runToExit(vols, "dso-agent-init", 60_000);
    logs.init = init.logs;
    expect(init.exit.code, init.logs).toBe(0);
    const initDone = Date.now();
    const dir = vols.dir("dso-secrets");
    const urlText = readFileSync(join(dir, "db.url"), "utf8");
    const url = new URL(urlText);
    const creds = JSON.parse(readFileSync(join(dir, "db.json"), "utf8")) as {
      username: string;
      password: string;
    };
    const username = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    expect({ username, password }).toEqual(creds);
    const state = JSON.parse(
      readFileSync(join(vols.dir("dso-agent-state"), "agent-state.json"), "utf8"),
    ) as {
      providers: { vault: { token: { token: string } } };
    };
    needles.push(
      { label: "database password", value: password },
      { label: "agent Vault token", value: state.providers.vault.token.token },
    );

    // The application's side: log in to PostgreSQL with exactly what was rendered.
    const login = await pg.psqlAs(username, password, "select current_user");
    expect(login.stdout.trim(), login.stderr).toBe(username);
    // And a wrong password is refused, so the login above proves the credentials.
    const wrong = await pg.psqlAs(username, `${password}x`, "select 1");
    expect(wrong.code).not.toBe(0);
    // Two files, one reference: one set of credentials.
    expect(await vaultRoles()).toEqual([username]);
    expect(loginCount()).toBe(1);

    const sidecar = runAgentContainer(vols, "dso-agent");
    await waitHealth(
      stack.telemetryPort,
      (h) => h.status === 200,
      "the sidecar's /healthz to return 200",
      30_000,
      [sidecar],
    );
    expect(sidecar.logs()).toContain("continuing from the init container's state");
    await check({ sidecar: sidecar.pid });
    // The lease is renewed at about two thirds of its 20 s: before the original expiry.
    await waitFor(() => sidecar.logs().includes('"msg":"renewed lease"'), {
      timeoutMs: DEFAULT_TTL * 1000 + 5_000,
      what: "the sidecar to renew the init container's database lease",
      processes: [sidecar],
    });
    expect(leaseRenewals()).toBeGreaterThanOrEqual(1);
    // Past the original TTL: the same credentials still work (VALID UNTIL moved by the renewal).
    const wait = initDone + (DEFAULT_TTL + 3) * 1000 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const later = await pg.psqlAs(username, password, "select current_user");
    expect(later.stdout.trim(), later.stderr).toBe(username);
    expect(readFileSync(join(dir, "db.url"), "utf8")).toBe(urlText);
    // Still one set of credentials and one login for the pod.
    expect(await vaultRoles()).toEqual([username]);
    expect(loginCount()).toBe(1);
    expect(sidecar.logs()).not.toContain("starting fresh");
    await check({ sidecar: sidecar.pid });

    // Pod deleted: SIGTERM to the sidecar, which revokes its lease (policy revokeOnShutdown).
    const stopped = await sidecar.stop(15_000);
    logs.sidecar = sidecar.logs();
    expect(stopped.code, sidecar.logs()).toBe(0);
    // The role's policy grants only what an application needs (read on database/creds/orders);
    // revoke-self (default policy) revokes the token and with it every lease it created.
    expect(sidecar.logs()).toContain(
      "the lease ends when the token that created it is revoked or expires",
    );
    expect(sidecar.logs()).toContain('"msg":"revoked the Vault token"');
    await waitFor(async () => (await vaultRoles()).length === 0, {
      timeoutMs: 10_000,
      what: `PostgreSQL role ${username} to be dropped after the lease was revoked`,
    });
    const afterRevoke = await pg.psqlAs(username, password, "select 1");
    expect(afterRevoke.code).not.toBe(0);
    await check();
  }, 120_000);

  it("with update on sys/leases/revoke, the sidecar revokes the lease itself on shutdown", async () => {
    const needles: Needle[] = [];
    const pod = await createInjectedPod(cluster, ordersPod("orders-1", "orders-revoker"));
    const vols = await preparePodVolumes(cluster, pod);
    for (const t of vols.tokens) needles.push(...tokenNeedles("pod service-account token", t));
    const init = await runToExit(vols, "dso-agent-init", 60_000);
    expect(init.exit.code, init.logs).toBe(0);
    const creds = JSON.parse(readFileSync(join(vols.dir("dso-secrets"), "db.json"), "utf8")) as {
      username: string;
      password: string;
    };
    needles.push({ label: "database password", value: creds.password });
    expect(await vaultRoles()).toEqual([creds.username]);
    const sidecar = runAgentContainer(vols, "dso-agent");
    await waitHealth(
      stack.telemetryPort,
      (h) => h.status === 200,
      "the sidecar's /healthz to return 200",
      30_000,
      [sidecar],
    );
    const stopped = await sidecar.stop(15_000);
    expect(stopped.code, sidecar.logs()).toBe(0);
    expect(sidecar.logs()).toContain('"msg":"revoked lease"');
    await waitFor(async () => (await vaultRoles()).length === 0, {
      timeoutMs: 10_000,
      what: `PostgreSQL role ${creds.username} to be dropped after the lease was revoked`,
    });
    await assertNoLeaks({
      needles,
      logs: {
        webhook: stack.webhook.logs(),
        openbao: bao.logs(),
        postgres: pg.logs(),
        init: init.logs,
        sidecar: sidecar.logs(),
      },
      cluster,
      namespaces: [NS],
      since,
    });
  }, 60_000);
});
