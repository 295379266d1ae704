// Registration against a real control plane: the chart's MutatingWebhookConfiguration (URL client
// config to the webhook on 127.0.0.1), ValidatingAdmissionPolicy and policy, applied to a real
// kube-apiserver; pods made by the real kube-controller-manager from Deployments.
//
// The tests run in order and share the cluster (starting one costs ~10 s on this machine); each
// uses its own namespace. The webhook is stopped in the failure-policy tests, then replaced by one
// in self-signed bootstrap mode. Everything started is stopped by test/e2e/setup-file.ts.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";
import { beforeAll, describe, expect, test } from "vitest";
import { applyChart, renderChart, writePolicyFile, type RenderedChart } from "./harness/chart.js";
import { startCluster, type Cluster } from "./harness/cluster.js";
import { freePort, waitFor } from "./harness/processes.js";
import { startWebhook, webhookCa, type Webhook } from "./harness/webhook.js";
import { repoRoot } from "./global-setup.js";

interface Container {
  name: string;
  args?: string[];
  env?: { name: string; value?: string }[];
  restartPolicy?: string;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Pod {
  metadata: {
    name: string;
    namespace: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    ownerReferences?: { kind: string; name: string }[];
  };
  spec: {
    initContainers?: Container[];
    containers: Container[];
    volumes?: { name: string; emptyDir?: { medium?: string } }[];
  };
}
interface List<T> {
  items: T[];
}

const INJECT_MARKER = "dso.io/injected";
/** A fresh value for each run, fed where a careless webhook would log it. */
const marker = (what: string): string => `dso-e2e-leak-${what}-${randomBytes(6).toString("hex")}`;
const ENV_MARKER = marker("env");
const TEMPLATE_MARKER = marker("template");
const ARG_MARKER = marker("arg");

let cluster: Cluster;
let webhook: Webhook;
let chart: RenderedChart;
let port: number;
let chartValues: Record<string, string>;
const NAMESPACE_RULE = { match: ["locked"], allowedProviders: ["azure"] };

function vaultAnnotations(extra: Record<string, string> = {}): Record<string, string> {
  return {
    "dso.io/inject": "true",
    "dso.io/provider": "vault",
    "dso.io/vault-address": "https://vault.vault.svc:8200",
    "dso.io/vault-role": "app",
    "dso.io/secret-password": "secret/data/app/db#password",
    ...extra,
  };
}

function deployment(
  namespace: string,
  name: string,
  annotations: Record<string, string>,
  replicas = 1,
  container: Partial<Container> = {},
): object {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name }, annotations },
        spec: {
          containers: [{ name: "app", image: "registry.example.com/app:1.0", ...container }],
        },
      },
    },
  };
}

function pod(namespace: string, name: string, annotations: Record<string, string>): object {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, annotations },
    spec: { containers: [{ name: "app", image: "registry.example.com/app:1.0" }] },
  };
}

async function createNamespace(name: string): Promise<void> {
  await cluster.kubectlOk(["create", "namespace", name]);
}

/** Bare pods need the namespace's default ServiceAccount, which the controller-manager makes. */
async function waitForDefaultServiceAccount(namespace: string): Promise<void> {
  await waitFor(
    async () =>
      (await cluster.apiRequest("GET", `/api/v1/namespaces/${namespace}/serviceaccounts/default`))
        .status === 200,
    {
      timeoutMs: 30_000,
      what: `the default ServiceAccount in namespace ${namespace}`,
      processes: cluster.processes,
    },
  );
}

async function apply(obj: object | string): Promise<void> {
  await cluster.kubectlOk(["apply", "-f", "-"], {
    input: typeof obj === "string" ? obj : JSON.stringify(obj),
  });
}

async function pods(namespace: string, selector?: string): Promise<Pod[]> {
  const q = selector === undefined ? "" : `?labelSelector=${encodeURIComponent(selector)}`;
  return (await cluster.api<List<Pod>>("GET", `/api/v1/namespaces/${namespace}/pods${q}`)).items;
}

/** Waits until `count` pods match and returns them. */
async function waitForPods(
  namespace: string,
  selector: string,
  count: number,
  what: string,
): Promise<Pod[]> {
  return waitFor(
    async () => {
      const found = await pods(namespace, selector);
      return found.length >= count ? found : undefined;
    },
    { timeoutMs: 45_000, what, processes: [...cluster.processes, webhook.process] },
  );
}

function expectInjected(p: Pod): void {
  const where = `pod ${p.metadata.namespace}/${p.metadata.name}`;
  expect(p.metadata.annotations?.[INJECT_MARKER], where).toBe("true");
  const init = p.spec.initContainers ?? [];
  expect(
    init.map((c) => c.name),
    where,
  ).toEqual(expect.arrayContaining(["dso-agent-init", "dso-agent"]));
  expect(init.find((c) => c.name === "dso-agent-init")?.args, where).toEqual(["init"]);
  const sidecar = init.find((c) => c.name === "dso-agent");
  expect(sidecar?.args, where).toEqual(["sidecar"]);
  expect(sidecar?.restartPolicy, where).toBe("Always");
  expect(
    sidecar?.env?.some((e) => e.name === "DSO_AGENT_CONFIG"),
    where,
  ).toBe(true);
  const volumes = p.spec.volumes ?? [];
  expect(volumes.find((v) => v.name === "dso-secrets")?.emptyDir?.medium, where).toBe("Memory");
  expect(
    volumes.map((v) => v.name),
    where,
  ).toEqual(expect.arrayContaining(["dso-secrets", "dso-agent-state", "dso-agent-token"]));
  for (const c of p.spec.containers) {
    const mount = c.volumeMounts?.find((m) => m.name === "dso-secrets");
    expect(mount?.readOnly, `${where} container ${c.name}`).toBe(true);
  }
}

function expectUntouched(p: Pod): void {
  const where = `pod ${p.metadata.namespace}/${p.metadata.name}`;
  expect(
    Object.keys(p.metadata.annotations ?? {}).filter((k) => k.startsWith("dso.io/")),
    where,
  ).toEqual([]);
  expect(p.spec.initContainers ?? [], where).toEqual([]);
  expect(
    (p.spec.volumes ?? []).map((v) => v.name).filter((n) => n.startsWith("dso-")),
    where,
  ).toEqual([]);
}

/** Messages of the events about ReplicaSets in the namespace, as `kubectl get events` shows them. */
async function replicaSetEvents(namespace: string): Promise<string[]> {
  const out = await cluster.kubectlOk([
    "get",
    "events",
    "-n",
    namespace,
    "--field-selector",
    "involvedObject.kind=ReplicaSet",
    "-o",
    "json",
  ]);
  return (JSON.parse(out) as List<{ message?: string }>).items.map((e) => e.message ?? "");
}

async function waitForReplicaSetEvent(namespace: string, includes: string[]): Promise<string> {
  return waitFor(
    async () =>
      (await replicaSetEvents(namespace)).find((m) => includes.every((s) => m.includes(s))),
    {
      timeoutMs: 45_000,
      what: `a ReplicaSet event in namespace ${namespace} containing ${includes.map((s) => JSON.stringify(s)).join(" and ")}`,
      processes: [...cluster.processes, webhook.process],
    },
  );
}

beforeAll(async () => {
  cluster = await startCluster();
  port = await freePort();
  chartValues = {
    "webhook.url": `https://127.0.0.1:${port}/mutate`,
    "webhook.caBundle": Buffer.from((await webhookCa(cluster)).caPem).toString("base64"),
  };
  // One rendering gives both the admission objects and the policy the webhook runs with.
  chart = await renderChart({
    set: chartValues,
    setJson: { "policy.namespaces": [NAMESPACE_RULE] },
  });
  webhook = await startWebhook(cluster, { port, policyFile: writePolicyFile(chart) });
  await Promise.all(
    ["orders", "plain", "bad", "locked", "down", "leaks", "selfsigned"].map(createNamespace),
  );
});

describe("registration against kube-apiserver v1.34 with the chart's configuration", () => {
  test("the API server accepts the chart's MutatingWebhookConfiguration (URL + caBundle) and calls the webhook", async () => {
    const out = await applyChart(cluster, chart);
    const mwcName = chart.one("MutatingWebhookConfiguration").metadata.name;
    expect(out).toContain(
      `mutatingwebhookconfiguration.admissionregistration.k8s.io/${mwcName} created`,
    );
    expect(out).toContain("validatingadmissionpolicy.admissionregistration.k8s.io/");
    expect(out).toContain("validatingadmissionpolicybinding.admissionregistration.k8s.io/");

    const stored = await cluster.api<{
      webhooks: {
        clientConfig: { url?: string; caBundle?: string };
        failurePolicy: string;
        matchConditions?: { name: string }[];
      }[];
    }>("GET", `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${mwcName}`);
    expect(stored.webhooks).toHaveLength(1);
    expect(stored.webhooks[0]?.clientConfig.url).toBe(webhook.url);
    expect(stored.webhooks[0]?.clientConfig.caBundle).toBe(webhook.caBundle);
    expect(stored.webhooks[0]?.failurePolicy).toBe("Fail");
    expect(stored.webhooks[0]?.matchConditions?.map((c) => c.name)).toEqual([
      "dso-inject-annotation",
    ]);

    // The configuration is picked up asynchronously: a server-side dry run shows when it is live.
    await waitForDefaultServiceAccount("orders");
    const dry = await waitFor(
      async () => {
        const r = await cluster.kubectl(["create", "--dry-run=server", "-o", "json", "-f", "-"], {
          input: JSON.stringify(pod("orders", "dry-run", vaultAnnotations())),
        });
        if (r.code !== 0) throw new Error(r.stderr);
        const p = JSON.parse(r.stdout) as Pod;
        return p.metadata.annotations?.[INJECT_MARKER] === "true" ? p : undefined;
      },
      {
        timeoutMs: 30_000,
        what: "a dry-run pod to come back injected through the API server",
        processes: [webhook.process],
      },
    );
    expectInjected(dry);
  });

  test("kubectl apply of the vault-kv example Deployment gives injected pods through the controller-manager", async () => {
    const example = readFileSync(join(repoRoot, "examples/vault-kv/deployment.yaml"), "utf8");
    await apply(example);
    const docs = parseAllDocuments(example).map(
      (d) => d.toJS() as { kind: string; spec?: { replicas?: number } },
    );
    const replicas = docs.find((d) => d.kind === "Deployment")?.spec?.replicas ?? 1;
    const made = await waitForPods(
      "orders",
      "app.kubernetes.io/name=orders-api",
      replicas,
      `${replicas} orders-api pods made by the controller-manager from the example Deployment`,
    );
    expect(made).toHaveLength(replicas);
    for (const p of made) {
      expect(p.metadata.ownerReferences?.[0]?.kind).toBe("ReplicaSet");
      expectInjected(p);
    }

    // The leak check's pod: markers where a webhook that logged request bodies would show them.
    await apply(
      deployment(
        "leaks",
        "leaks-app",
        vaultAnnotations({
          "dso.io/secret-app.env": "secret/data/app/db",
          "dso.io/template-app.env": `PASSWORD={{password}} # ${TEMPLATE_MARKER}`,
        }),
        1,
        { env: [{ name: "API_KEY", value: ENV_MARKER }], args: [`--token=${ARG_MARKER}`] },
      ),
    );
    const [leaky] = await waitForPods("leaks", "app=leaks-app", 1, "the leaks-app pod");
    if (leaky === undefined) throw new Error("unreachable: waitForPods returned no pod");
    expectInjected(leaky);
  });

  test("kubectl rollout restart gives injected pods again", async () => {
    const before = new Set(
      (await pods("orders", "app.kubernetes.io/name=orders-api")).map((p) => p.metadata.name),
    );
    await cluster.kubectlOk(["rollout", "restart", "deployment/orders-api", "-n", "orders"]);
    // Without a kubelet no pod gets Ready, so the rollout only surges (maxSurge 25% of 2 = 1 pod).
    const restarted = await waitFor(
      async () => {
        const fresh = (await pods("orders", "app.kubernetes.io/name=orders-api")).filter(
          (p) => !before.has(p.metadata.name),
        );
        return fresh.length > 0 ? fresh : undefined;
      },
      {
        timeoutMs: 45_000,
        what: "a new orders-api pod after kubectl rollout restart",
        processes: [...cluster.processes, webhook.process],
      },
    );
    for (const p of restarted) {
      expect(p.metadata.annotations?.["kubectl.kubernetes.io/restartedAt"]).toBeDefined();
      expectInjected(p);
    }
  });

  test("an un-annotated Deployment is untouched and never sent to the webhook", async () => {
    await apply(deployment("plain", "plain", {}, 2));
    const made = await waitForPods(
      "plain",
      "app=plain",
      2,
      "2 pods of the un-annotated Deployment",
    );
    for (const p of made) expectUntouched(p);
    // matchConditions: the API server did not even ask the webhook (which logs every review it
    // gets with its namespace, as it did for the orders pods).
    expect(webhook.logs()).toContain('"namespace":"orders"');
    expect(webhook.logs()).not.toContain('"namespace":"plain"');
  });

  test("a pod with a bad annotation is refused and the message is in the ReplicaSet's events", async () => {
    const { "dso.io/vault-role": role, ...rest } = vaultAnnotations();
    // A typo in a key: the webhook refuses it and suggests the key it knows.
    await apply(deployment("bad", "typo", { ...rest, "dso.io/vault-rol": role ?? "app" }));
    const event = await waitForReplicaSetEvent("bad", [
      "denied the request",
      "dso.io/vault-rol",
      "dso.io/vault-role",
    ]);
    expect(event).toContain('admission webhook "inject.dso.io" denied the request');
    expect(event).toMatch(/did you mean "dso\.io\/vault-role"/);
    expect(await pods("bad")).toEqual([]);
  });

  test("the chart's policy (--policy from its ConfigMap) is enforced: a namespace rule refuses a vault pod", async () => {
    // The webhook runs with exactly what the chart rendered into data["policy.yaml"].
    expect(chart.policyYaml()).toContain("kind: InjectionPolicy");
    await apply(deployment("locked", "vault-app", vaultAnnotations()));
    const event = await waitForReplicaSetEvent("locked", [
      "denied the request",
      "policy namespaces[0] (match locked)",
    ]);
    expect(event).toContain("vault");
    expect(await pods("locked")).toEqual([]);
  });

  test("the webhook's logs carry no request bodies (annotation values, env, args)", () => {
    const logs = webhook.logs();
    // Not vacuous: the webhook did review the marked pod and logged that it did.
    expect(logs).toMatch(
      /"namespace":"leaks".*"decision":"inject"|"decision":"inject".*"namespace":"leaks"/,
    );
    for (const m of [ENV_MARKER, TEMPLATE_MARKER, ARG_MARKER]) expect(logs).not.toContain(m);
    // Nor the template text or secret references of any pod.
    expect(logs).not.toContain("PASSWORD={{password}}");
    expect(logs).not.toContain("secret/data/app/db");
    expect(logs).not.toContain("secret/data/orders/db");
  });

  test("with the webhook stopped and failurePolicy Fail, annotated pods are refused and ordinary pods admitted", async () => {
    await webhook.stop();
    await waitForDefaultServiceAccount("down");
    const refused = await cluster.kubectl(["create", "-f", "-"], {
      input: JSON.stringify(pod("down", "annotated", vaultAnnotations())),
    });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('failed calling webhook "inject.dso.io"');
    await cluster.kubectlOk(["create", "-f", "-"], {
      input: JSON.stringify(pod("down", "ordinary", {})),
    });
    // An annotation that does not ask for injection is not matched either.
    await cluster.kubectlOk(["create", "-f", "-"], {
      input: JSON.stringify(pod("down", "not-asking", { "example.com/owner": "team-a" })),
    });
    expect((await pods("down")).map((p) => p.metadata.name).sort()).toEqual([
      "not-asking",
      "ordinary",
    ]);
  });

  test("with failurePolicy Ignore and the webhook down, the ValidatingAdmissionPolicy still refuses the annotated pod", async () => {
    const ignore = await renderChart({
      set: { ...chartValues, "webhook.failurePolicy": "Ignore" },
      setJson: { "policy.namespaces": [NAMESPACE_RULE] },
    });
    expect(await applyChart(cluster, ignore)).toContain("configured");
    let n = 0;
    // Until the API server sees Ignore it still answers "failed calling webhook".
    const stderr = await waitFor(
      async () => {
        n += 1;
        const r = await cluster.kubectl(["create", "-f", "-"], {
          input: JSON.stringify(pod("down", `annotated-${n}`, vaultAnnotations())),
        });
        if (r.code === 0) throw new Error(`pod down/annotated-${n} was admitted without injection`);
        return r.stderr.includes("ValidatingAdmissionPolicy") ? r.stderr : undefined;
      },
      {
        timeoutMs: 30_000,
        what: "the ValidatingAdmissionPolicy to refuse an uninjected annotated pod",
      },
    );
    expect(stderr).toContain(
      'pod asks for dso.io/inject: "true" but was not injected by the DSO webhook',
    );
    expect(stderr).not.toContain("failed calling webhook");
    await cluster.kubectlOk(["create", "-f", "-"], {
      input: JSON.stringify(pod("down", "ordinary-2", {})),
    });
    expect((await pods("down")).map((p) => p.metadata.name).sort()).toEqual([
      "not-asking",
      "ordinary",
      "ordinary-2",
    ]);
  });

  test("self-signed bootstrap: the webhook creates its Secret, patches the caBundle, and the API server calls it", async () => {
    await cluster.kubectlOk([
      "delete",
      "mutatingwebhookconfiguration",
      chart.one("MutatingWebhookConfiguration").metadata.name,
    ]);
    await createNamespace("dso");
    const selfPort = await freePort();
    // "localhost": the self-signed certificate names <service>, <service>.<ns>.svc, ...; the API
    // server reaches this machine's webhook by a URL whose host is one of those names.
    const selfChart = await renderChart({
      set: {
        "certificates.mode": "self-signed",
        "webhook.url": `https://localhost:${selfPort}/mutate`,
        "webhook.configurationName": "dso-self-signed",
      },
    });
    const mwc = selfChart.one("MutatingWebhookConfiguration") as unknown as {
      webhooks: { clientConfig: { caBundle?: string } }[];
    };
    expect(mwc.webhooks[0]?.clientConfig.caBundle).toBeUndefined();
    await applyChart(cluster, selfChart, ["MutatingWebhookConfiguration"]);
    expect(stringify(selfChart.one("Deployment"))).toContain("dso-bootstrap-tls");

    webhook = await startWebhook(cluster, {
      port: selfPort,
      selfSigned: {
        namespace: "dso",
        secretName: "dso-bootstrap-tls",
        webhookConfigName: "dso-self-signed",
        serviceName: "localhost",
      },
    });
    const secret = await cluster.api<{ type: string; data: Record<string, string> }>(
      "GET",
      "/api/v1/namespaces/dso/secrets/dso-bootstrap-tls",
    );
    expect(secret.type).toBe("kubernetes.io/tls");
    expect(Object.keys(secret.data).sort()).toEqual(["ca.crt", "tls.crt", "tls.key"]);
    const caBundle = await waitFor(
      async () => {
        const c = await cluster.api<{ webhooks: { clientConfig: { caBundle?: string } }[] }>(
          "GET",
          "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/dso-self-signed",
        );
        return c.webhooks[0]?.clientConfig.caBundle;
      },
      {
        timeoutMs: 30_000,
        what: "the webhook to set caBundle on MutatingWebhookConfiguration dso-self-signed",
        processes: [webhook.process],
      },
    );
    expect(Buffer.from(caBundle, "base64").toString("utf8")).toContain(
      Buffer.from(secret.data["ca.crt"] ?? "", "base64")
        .toString("utf8")
        .trim(),
    );

    await waitForDefaultServiceAccount("selfsigned");
    let n = 0;
    const created = await waitFor(
      async () => {
        n += 1;
        const r = await cluster.kubectl(["create", "-o", "json", "-f", "-"], {
          input: JSON.stringify(pod("selfsigned", `app-${n}`, vaultAnnotations())),
        });
        // Until the API server has the new caBundle the call fails TLS verification (failurePolicy Fail).
        if (r.code !== 0) throw new Error(r.stderr);
        return JSON.parse(r.stdout) as Pod;
      },
      {
        timeoutMs: 30_000,
        what: "the API server to call the self-signed webhook and admit an injected pod",
        processes: [webhook.process],
      },
    );
    expectInjected(created);
    expect(webhook.logs()).toContain('"namespace":"selfsigned"');
  });
});
