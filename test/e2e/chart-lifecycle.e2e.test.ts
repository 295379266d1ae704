// The chart's lifecycle as an operator runs it, with the real helm against the real API server:
// `helm install dso charts/dso -n dso-system --create-namespace` (certificates.mode=helm), then
// `helm upgrade` with a changed policy value, a mistyped value refused by values.schema.json, and
// `helm uninstall`. Without a kubelet the webhook's pods stay Pending, so nothing waits for them
// (no --wait); the objects the API server stores are what is checked.
import { X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { CHART_DIR } from "./harness/chart.js";
import { startCluster, type Cluster } from "./harness/cluster.js";
import { makeTempDir, run, type RunResult } from "./harness/processes.js";

const NS = "dso-system";
const RELEASE = "dso";
/** Values of the install: certificates from the chart, and a ClusterRole (readServiceAccounts). */
const INSTALL_SET = [
  "--set",
  "certificates.mode=helm",
  "--set",
  "policy.readServiceAccounts=true",
  "--set-json",
  'policy.namespaces=[{"match":["sandbox"],"injection":false}]',
];

let cluster: Cluster;
let helmHome: string;

function helm(args: readonly string[]): Promise<RunResult> {
  const bin = process.env.DSO_E2E_HELM;
  if (bin === undefined || bin === "") throw new Error("DSO_E2E_HELM is not set");
  return run(bin, [...args, "--kubeconfig", cluster.kubeconfig], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: helmHome },
    timeoutMs: 90_000,
  });
}

async function helmOk(args: readonly string[]): Promise<string> {
  const r = await helm(args);
  if (r.code !== 0) throw new Error(`helm ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

interface Obj {
  kind: string;
  metadata: { name: string; namespace?: string; generation?: number };
  data?: Record<string, string>;
  [k: string]: unknown;
}

const get = <T = Obj>(path: string): Promise<T> => cluster.api<T>("GET", path);
const ADM = "/apis/admissionregistration.k8s.io/v1";
const RBAC = "/apis/rbac.authorization.k8s.io/v1";

interface Mwc {
  webhooks: {
    clientConfig: { caBundle?: string; service?: { name: string; namespace: string } };
  }[];
}

const b64 = (s: string | undefined): string => Buffer.from(s ?? "", "base64").toString("utf8");

async function tlsSecret(): Promise<Record<string, string>> {
  const s = await get(`/api/v1/namespaces/${NS}/secrets/dso-tls`);
  return Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, b64(v)]));
}

async function policy(): Promise<{ kind: string; agent?: { telemetryPort?: number } } & Obj> {
  const cm = await get(`/api/v1/namespaces/${NS}/configmaps/dso-policy`);
  return parse(cm.data?.["policy.yaml"] ?? "") as {
    kind: string;
    agent?: { telemetryPort?: number };
  } & Obj;
}

/** Every object of the release's manifest (helm get manifest), as `kind/name` that kubectl finds. */
async function present(manifest: string): Promise<string[]> {
  const out = await cluster.kubectlOk(["get", "-f", "-", "--ignore-not-found", "-o", "name"], {
    input: manifest,
  });
  return out.split("\n").filter((l) => l !== "");
}

let manifest = "";
let installed: { ca: string; crt: string; mwcCa: string; template: string };

beforeAll(async () => {
  cluster = await startCluster();
  helmHome = makeTempDir("dso-e2e-helm-home");
});

describe("helm install / upgrade / uninstall of charts/dso against kube-apiserver", () => {
  it("helm install creates the webhook objects, the MWC with the Secret's CA, the VAP and binding, the policy ConfigMap and RBAC", async () => {
    const out = await helmOk([
      "install",
      RELEASE,
      CHART_DIR,
      "-n",
      NS,
      "--create-namespace",
      ...INSTALL_SET,
    ]);
    expect(out).toContain("STATUS: deployed");
    manifest = await helmOk(["get", "manifest", RELEASE, "-n", NS]);
    const kinds = (await present(manifest)).map((n) => n.split("/")[0]).sort();
    expect(kinds).toEqual(
      [
        "clusterrole.rbac.authorization.k8s.io",
        "clusterrolebinding.rbac.authorization.k8s.io",
        "configmap",
        "deployment.apps",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io",
        "poddisruptionbudget.policy",
        "secret",
        "service",
        "serviceaccount",
        "validatingadmissionpolicy.admissionregistration.k8s.io",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io",
      ].sort(),
    );

    const tls = await tlsSecret();
    const mwc = await get<Mwc>(`${ADM}/mutatingwebhookconfigurations/dso`);
    const client = mwc.webhooks[0]?.clientConfig;
    expect(b64(client?.caBundle)).toBe(tls["ca.crt"]);
    expect(client?.service).toMatchObject({ name: "dso", namespace: NS });
    // The serving certificate is the CA's, for the Service's DNS name.
    const ca = new X509Certificate(tls["ca.crt"] ?? "");
    const leaf = new X509Certificate(tls["tls.crt"] ?? "");
    expect(leaf.checkIssued(ca)).toBe(true);
    expect(leaf.subjectAltName).toContain(`DNS:dso.${NS}.svc`);

    const vap = await get<{ spec: { validations: unknown[] } }>(
      `${ADM}/validatingadmissionpolicies/dso-require-injection`,
    );
    expect(vap.spec.validations.length).toBeGreaterThan(0);
    const binding = await get<{ spec: { policyName: string } }>(
      `${ADM}/validatingadmissionpolicybindings/dso-require-injection`,
    );
    expect(binding.spec.policyName).toBe("dso-require-injection");

    const pol = await policy();
    expect(pol.kind).toBe("InjectionPolicy");
    expect(JSON.stringify(pol)).toContain("sandbox");

    const role = await get<{ rules: { resources?: string[]; verbs: string[] }[] }>(
      `${RBAC}/clusterroles/dso`,
    );
    expect(role.rules.some((r) => r.resources?.includes("serviceaccounts"))).toBe(true);
    expect(role.rules.flatMap((r) => r.verbs)).not.toContain("*");
    const crb = await get<{ subjects: { name: string; namespace: string }[] }>(
      `${RBAC}/clusterrolebindings/dso`,
    );
    expect(crb.subjects).toEqual([expect.objectContaining({ name: "dso", namespace: NS })]);

    const deploy = await get<{ spec: { replicas: number; template: unknown } }>(
      `/apis/apps/v1/namespaces/${NS}/deployments/dso`,
    );
    expect(deploy.spec.replicas).toBe(2);
    installed = {
      ca: tls["ca.crt"] ?? "",
      crt: tls["tls.crt"] ?? "",
      mwcCa: client?.caBundle ?? "",
      template: JSON.stringify(deploy.spec.template),
    };
  });

  it("helm upgrade with a changed policy value keeps the CA, certificate and caBundle, and updates the ConfigMap (no rollout)", async () => {
    expect((await policy()).agent?.telemetryPort).toBe(8099);
    const out = await helmOk([
      "upgrade",
      RELEASE,
      CHART_DIR,
      "-n",
      NS,
      ...INSTALL_SET,
      "--set",
      "policy.agent.telemetryPort=9099",
    ]);
    expect(out).toContain("REVISION: 2");
    expect((await policy()).agent?.telemetryPort).toBe(9099);
    const tls = await tlsSecret();
    expect(tls["ca.crt"]).toBe(installed.ca);
    expect(tls["tls.crt"]).toBe(installed.crt);
    const mwc = await get<Mwc>(`${ADM}/mutatingwebhookconfigurations/dso`);
    expect(mwc.webhooks[0]?.clientConfig.caBundle).toBe(installed.mwcCa);
    // The webhook reloads the mounted policy itself: the pod template must not change.
    const deploy = await get<{ spec: { template: unknown } }>(
      `/apis/apps/v1/namespaces/${NS}/deployments/dso`,
    );
    expect(JSON.stringify(deploy.spec.template)).toBe(installed.template);
  });

  it.each([
    [["--set", "replicaCount=two"], "at '/replicaCount': got string, want integer"],
    [["--set", "webhook.failurePolcy=Ignore"], "additional properties 'failurePolcy' not allowed"],
  ])(
    "a mistyped value (%j) fails helm install and helm upgrade with the schema's message",
    async (set, message) => {
      const install = await helm([
        "install",
        "dso-typo",
        CHART_DIR,
        "-n",
        "dso-typo",
        "--create-namespace",
        ...set,
      ]);
      expect(install.code).not.toBe(0);
      expect(install.stderr).toContain(message);
      const upgrade = await helm(["upgrade", RELEASE, CHART_DIR, "-n", NS, ...INSTALL_SET, ...set]);
      expect(upgrade.code).not.toBe(0);
      expect(upgrade.stderr).toContain(message);
      const list = JSON.parse(await helmOk(["list", "-A", "-o", "json"])) as {
        name: string;
        revision: string;
      }[];
      expect(list.map((r) => [r.name, r.revision])).toEqual([[RELEASE, "2"]]);
    },
  );

  it("helm uninstall removes every object of the release (MWC, VAP, ClusterRole, webhook objects)", async () => {
    expect((await present(manifest)).length).toBe(11);
    await helmOk(["uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "60s"]);
    expect(await present(manifest)).toEqual([]);
    for (const path of [
      `${ADM}/mutatingwebhookconfigurations/dso`,
      `${ADM}/validatingadmissionpolicies/dso-require-injection`,
      `${ADM}/validatingadmissionpolicybindings/dso-require-injection`,
      `${RBAC}/clusterroles/dso`,
      `${RBAC}/clusterrolebindings/dso`,
    ])
      expect((await cluster.apiRequest("GET", path)).status, path).toBe(404);
    expect(JSON.parse(await helmOk(["list", "-A", "-o", "json"]))).toEqual([]);
  });
});
