/**
 * The Helm chart (charts/dso), rendered with the real helm binary for each certificate mode and
 * policy shape; assertions are on the parsed manifests.
 */

import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_POLICY, parsePolicy } from "../../packages/core/src/policy.js";
import { SETTING_NAMES } from "../../packages/core/src/policy-types.js";
import type { AgentPolicy, NamespaceRule, Policy } from "../../packages/core/src/policy-types.js";
import { CHART_DIR, Helm, KUBE_VERSION, locateHelm, parseYaml } from "./helm.js";
import type { Manifest } from "./helm.js";

// Tests run concurrently (each renders with its own helm process and values file), which halves
// the wall time on a small machine.
// Fails the whole file, with how to build helm, when there is none: never a silent skip.
const helm = new Helm(locateHelm());
afterAll(() => {
  helm.dispose();
});

const NS = "dso-system";

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
interface Container {
  name: string;
  image: string;
  env: EnvVar[];
  ports: { name: string; containerPort: number }[];
  volumeMounts: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
  securityContext: Record<string, unknown>;
  readinessProbe: Record<string, unknown>;
  livenessProbe: Record<string, unknown>;
  resources: Record<string, unknown>;
  lifecycle?: unknown;
}
interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken: boolean;
  securityContext: Record<string, unknown>;
  topologySpreadConstraints: Record<string, unknown>[];
  containers: Container[];
  volumes: { name: string; configMap?: { name: string }; secret?: { secretName: string } }[];
}
interface Deployment extends Manifest {
  spec: {
    replicas: number;
    template: { metadata: { annotations?: Record<string, string> }; spec: PodSpec };
  };
}
interface Webhook {
  name: string;
  admissionReviewVersions: string[];
  sideEffects: string;
  reinvocationPolicy: string;
  failurePolicy: string;
  timeoutSeconds: number;
  rules: unknown[];
  matchConditions: { name: string; expression: string }[];
  namespaceSelector: unknown;
  clientConfig: { service?: unknown; url?: string; caBundle?: string };
}
interface MutatingWebhookConfiguration extends Manifest {
  webhooks: Webhook[];
}
interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
interface Role extends Manifest {
  rules: PolicyRule[];
}

function only(manifests: Manifest[], kind: string, name?: string): Manifest {
  const found = manifests.filter(
    (m) => m.kind === kind && (name === undefined || m.metadata.name === name),
  );
  if (found.length !== 1) {
    throw new Error(
      `expected one ${kind}${name === undefined ? "" : ` ${name}`}, found ${found.length}`,
    );
  }
  return found[0] as Manifest;
}

function kinds(manifests: Manifest[]): string[] {
  return manifests.map((m) => m.kind).sort();
}

function webhookOf(manifests: Manifest[]): Webhook {
  const mwc = only(manifests, "MutatingWebhookConfiguration") as MutatingWebhookConfiguration;
  expect(mwc.webhooks).toHaveLength(1);
  return mwc.webhooks[0] as Webhook;
}

function container(manifests: Manifest[]): Container {
  const deployment = only(manifests, "Deployment") as Deployment;
  expect(deployment.spec.template.spec.containers).toHaveLength(1);
  return deployment.spec.template.spec.containers[0] as Container;
}

function envOf(manifests: Manifest[]): Record<string, string | undefined> {
  return Object.fromEntries(container(manifests).env.map((e) => [e.name, e.value]));
}

/** Every RBAC rule the release grants, from Roles and ClusterRoles. */
function rbacRules(manifests: Manifest[]): PolicyRule[] {
  return manifests
    .filter((m) => m.kind === "Role" || m.kind === "ClusterRole")
    .flatMap((m) => (m as Role).rules);
}

function policyTextOf(manifests: Manifest[]): string {
  const configMap = only(manifests, "ConfigMap", "dso-policy");
  const data = configMap["data"] as Record<string, string>;
  expect(Object.keys(data)).toEqual(["policy.yaml"]);
  return data["policy.yaml"] ?? "";
}

function policyOf(manifests: Manifest[]): unknown {
  return parseYaml(policyTextOf(manifests));
}

/** The policy as the webhook loads it, with core's own parser; fails listing its problems. */
function loadedPolicyOf(manifests: Manifest[]): Policy {
  const parsed = parsePolicy(policyTextOf(manifests));
  if (!parsed.ok) {
    throw new Error(`parsePolicy refused the rendered policy: ${JSON.stringify(parsed.problems)}`);
  }
  return parsed.policy;
}

const defaultNamespaceSelector = {
  matchExpressions: [
    { key: "kubernetes.io/metadata.name", operator: "NotIn", values: ["kube-system", NS] },
  ],
};

// Keyed by AgentPolicy's fields: a field added to the type fails to compile here until the chart has it.
const defaultAgent: Record<keyof AgentPolicy, unknown> = {
  image: "ghcr.io/dso-project/dso-agent:0.1.0",
  imagePullPolicy: "IfNotPresent",
  sidecarStyle: "native",
  runAsUser: 65532,
  filesGroup: 65532,
  fileMode: "0440",
  tokenExpirationSeconds: 600,
  revokeOnShutdown: false,
  telemetryPort: 8099,
};

describe.concurrent("helm lint", () => {
  it("passes as operators run it: helm lint charts/dso", async () => {
    const result = await helm.run(["lint", CHART_DIR]);
    expect(result.stdout).toContain("1 chart(s) linted, 0 chart(s) failed");
    expect(result.code).toBe(0);
  });

  it.each([
    ["helm", {}],
    ["cert-manager", { certificates: { mode: "cert-manager" } }],
    ["self-signed", { certificates: { mode: "self-signed" } }],
    [
      "everything on",
      {
        certificates: { mode: "self-signed" },
        policy: { readServiceAccounts: true },
        networkPolicy: { enabled: true },
        serviceMonitor: { enabled: true },
      },
    ],
  ])("passes --strict in %s mode", async (_name, values) => {
    const result = await helm.run([
      "lint",
      CHART_DIR,
      "--strict",
      "--kube-version",
      KUBE_VERSION,
      "--values",
      helm.valuesFile(values),
    ]);
    expect(result.stderr + result.stdout).toContain("0 chart(s) failed");
    expect(result.code).toBe(0);
  });
});

describe.concurrent("default install (certificates generated by helm)", async () => {
  const manifests = await helm.render({});

  it("renders exactly the webhook's objects: no RBAC, NetworkPolicy or ServiceMonitor", () => {
    expect(kinds(manifests)).toEqual([
      "ConfigMap",
      "Deployment",
      "MutatingWebhookConfiguration",
      "PodDisruptionBudget",
      "Secret",
      "Service",
      "ServiceAccount",
      "ValidatingAdmissionPolicy",
      "ValidatingAdmissionPolicyBinding",
    ]);
  });

  it("registers the webhook for CREATE of annotated pods only, outside kube-system and its own namespace", () => {
    const webhook = webhookOf(manifests);
    expect(webhook).toMatchObject({
      name: "inject.dso.io",
      admissionReviewVersions: ["v1"],
      sideEffects: "None",
      reinvocationPolicy: "IfNeeded",
      failurePolicy: "Fail",
      timeoutSeconds: 10,
      rules: [
        {
          apiGroups: [""],
          apiVersions: ["v1"],
          operations: ["CREATE"],
          resources: ["pods"],
          scope: "Namespaced",
        },
      ],
      matchConditions: [
        {
          name: "dso-inject-annotation",
          expression:
            "has(object.metadata.annotations) && 'dso.io/inject' in object.metadata.annotations",
        },
      ],
      namespaceSelector: defaultNamespaceSelector,
    });
    expect(webhook.clientConfig.service).toEqual({
      name: "dso",
      namespace: NS,
      path: "/mutate",
      port: 443,
    });
    expect(webhook.clientConfig.url).toBeUndefined();
  });

  it("generates a CA and a serving certificate for the Service, and puts the same CA in caBundle", () => {
    const secret = only(manifests, "Secret", "dso-tls");
    expect(secret["type"]).toBe("kubernetes.io/tls");
    const data = secret["data"] as Record<string, string>;
    const decode = (key: string): string => Buffer.from(data[key] ?? "", "base64").toString("utf8");
    const ca = new X509Certificate(decode("ca.crt"));
    const cert = new X509Certificate(decode("tls.crt"));
    expect(ca.ca).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(decode("tls.key")))).toBe(true);
    expect(cert.subjectAltName?.split(", ")).toEqual([
      "DNS:dso",
      `DNS:dso.${NS}`,
      `DNS:dso.${NS}.svc`,
      `DNS:dso.${NS}.svc.cluster.local`,
    ]);
    expect(webhookOf(manifests).clientConfig.caBundle).toBe(data["ca.crt"]);
    expect(only(manifests, "MutatingWebhookConfiguration").metadata.annotations).toBeUndefined();
  });

  it("runs two replicas spread across nodes with a PodDisruptionBudget", () => {
    const deployment = only(manifests, "Deployment") as Deployment;
    expect(deployment.spec.replicas).toBe(2);
    expect(deployment.spec.template.spec.topologySpreadConstraints).toEqual([
      {
        maxSkew: 1,
        topologyKey: "kubernetes.io/hostname",
        whenUnsatisfiable: "ScheduleAnyway",
        labelSelector: {
          matchLabels: {
            "app.kubernetes.io/name": "dso",
            "app.kubernetes.io/instance": "dso",
            "app.kubernetes.io/component": "webhook",
          },
        },
      },
    ]);
    expect(only(manifests, "PodDisruptionBudget")["spec"]).toMatchObject({ minAvailable: 1 });
  });

  it("locks the pod and container down", () => {
    const spec = (only(manifests, "Deployment") as Deployment).spec.template.spec;
    expect(spec.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(container(manifests).securityContext).toEqual({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(only(manifests, "ServiceAccount")["automountServiceAccountToken"]).toBe(false);
  });

  it("probes /readyz and /healthz over HTTPS on 8443, behind a Service on 443", () => {
    const c = container(manifests);
    expect(c.image).toBe("ghcr.io/dso-project/dso-webhook:0.1.0");
    expect(c.ports).toEqual([{ name: "https", containerPort: 8443, protocol: "TCP" }]);
    expect(c.readinessProbe).toMatchObject({
      httpGet: { path: "/readyz", port: "https", scheme: "HTTPS" },
    });
    expect(c.livenessProbe).toMatchObject({
      httpGet: { path: "/healthz", port: "https", scheme: "HTTPS" },
    });
    expect(c.resources).toMatchObject({ requests: { cpu: "50m" }, limits: { memory: "256Mi" } });
    expect(c.lifecycle).toEqual({ preStop: { sleep: { seconds: 5 } } });
    expect(only(manifests, "Service")["spec"]).toMatchObject({
      type: "ClusterIP",
      ports: [{ name: "https", port: 443, targetPort: "https", protocol: "TCP" }],
    });
  });

  it("maps settings onto the webhook's environment and mounts certificate files", () => {
    expect(envOf(manifests)).toEqual({
      DSO_WEBHOOK_PORT: "8443",
      DSO_POLICY_FILE: "/etc/dso/policy/policy.yaml",
      DSO_LOG_LEVEL: "info",
      DSO_NAMESPACE: undefined,
      DSO_SERVICE_NAME: "dso",
      DSO_CERT_MODE: "files",
      DSO_TLS_CERT: "/etc/dso/tls/tls.crt",
      DSO_TLS_KEY: "/etc/dso/tls/tls.key",
    });
    const namespaceVar = container(manifests).env.find((e) => e.name === "DSO_NAMESPACE");
    expect(namespaceVar?.valueFrom).toEqual({ fieldRef: { fieldPath: "metadata.namespace" } });
    const spec = (only(manifests, "Deployment") as Deployment).spec.template.spec;
    expect(spec.volumes).toContainEqual({ name: "tls", secret: { secretName: "dso-tls" } });
  });

  it("mounts the policy directory without subPath and does not roll pods on policy changes", () => {
    const mounts = container(manifests).volumeMounts;
    expect(mounts).toContainEqual({ name: "policy", mountPath: "/etc/dso/policy", readOnly: true });
    expect(mounts.every((m) => m.subPath === undefined)).toBe(true);
    const deployment = only(manifests, "Deployment") as Deployment;
    expect(deployment.spec.template.spec.volumes).toContainEqual({
      name: "policy",
      configMap: { name: "dso-policy" },
    });
    expect(deployment.spec.template.metadata.annotations).toBeUndefined();
  });

  it("renders a default policy that the webhook loads as its built-in defaults", () => {
    expect(loadedPolicyOf(manifests)).toEqual({
      ...DEFAULT_POLICY,
      agent: { ...DEFAULT_POLICY.agent, imagePullPolicy: "IfNotPresent" },
    });
  });

  it("renders the default policy with its headers", () => {
    expect(policyOf(manifests)).toEqual({
      apiVersion: "dso.io/v1",
      kind: "InjectionPolicy",
      defaults: {},
      allowOverrides: ["*"],
      agent: defaultAgent,
      readServiceAccounts: false,
      namespaces: [],
    });
  });

  it("installs the safety net: refuse annotated pods that were not injected", () => {
    const vap = only(manifests, "ValidatingAdmissionPolicy", "dso-require-injection");
    expect(vap.apiVersion).toBe("admissionregistration.k8s.io/v1");
    const spec = vap["spec"] as {
      failurePolicy: string;
      matchConstraints: { resourceRules: unknown[]; namespaceSelector: unknown };
      matchConditions: { expression: string }[];
      variables: { name: string; expression: string }[];
      validations: { expression: string; messageExpression: string; message: string }[];
    };
    expect(spec.failurePolicy).toBe("Fail");
    expect(spec.matchConstraints).toEqual({
      resourceRules: [
        { apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"] },
      ],
      namespaceSelector: defaultNamespaceSelector,
    });
    expect(spec.matchConditions[0]?.expression).toContain(
      "object.metadata.annotations['dso.io/inject'] == 'true'",
    );
    const variables = Object.fromEntries(spec.variables.map((v) => [v.name, v.expression]));
    expect(variables["injected"]).toContain(
      "object.metadata.annotations['dso.io/injected'] == 'true'",
    );
    for (const name of ["'dso-agent-init'", "'dso-agent'", "object.spec.containers.exists"]) {
      expect(variables["hasAgent"]).toContain(name);
    }
    expect(spec.validations).toHaveLength(1);
    expect(spec.validations[0]?.expression).toBe("variables.injected && variables.hasAgent");
    expect(spec.validations[0]?.message).toContain("was not injected by the DSO webhook");
    expect(spec.validations[0]?.messageExpression).toContain(`in namespace ${NS}`);
    const binding = only(manifests, "ValidatingAdmissionPolicyBinding", "dso-require-injection");
    expect(binding["spec"]).toEqual({
      policyName: "dso-require-injection",
      validationActions: ["Deny"],
    });
  });
});

describe.concurrent("certificate modes", () => {
  it("cert-manager: a private CA chain, a Certificate, CA injection, and no access to secrets", async () => {
    const manifests = await helm.render({ certificates: { mode: "cert-manager" } });
    expect(manifests.filter((m) => m.kind === "Secret")).toEqual([]);
    expect(manifests.filter((m) => m.kind === "Issuer").map((m) => m.metadata.name)).toEqual([
      "dso-selfsigned",
      "dso-ca",
    ]);
    const ca = only(manifests, "Certificate", "dso-ca");
    expect(ca["spec"]).toMatchObject({
      isCA: true,
      secretName: "dso-ca",
      issuerRef: { name: "dso-selfsigned" },
    });
    const serving = only(manifests, "Certificate", "dso-tls");
    expect(serving["spec"]).toMatchObject({
      secretName: "dso-tls",
      dnsNames: ["dso", `dso.${NS}`, `dso.${NS}.svc`, `dso.${NS}.svc.cluster.local`],
      issuerRef: { name: "dso-ca", kind: "Issuer", group: "cert-manager.io" },
    });
    const mwc = only(manifests, "MutatingWebhookConfiguration");
    expect(mwc.metadata.annotations).toEqual({ "cert-manager.io/inject-ca-from": `${NS}/dso-tls` });
    // No caBundle key at all: the CA injector owns it and Helm's three-way merge leaves it alone.
    expect("caBundle" in webhookOf(manifests).clientConfig).toBe(false);
    expect(envOf(manifests)["DSO_CERT_MODE"]).toBe("files");
    expect(rbacRules(manifests)).toEqual([]);
    expect(kinds(manifests)).not.toContain("RoleBinding");
  });

  it("cert-manager with the operator's issuer: no chart-made issuers", async () => {
    const manifests = await helm.render({
      certificates: {
        mode: "cert-manager",
        certManager: {
          issuerRef: { name: "corp-ca", kind: "ClusterIssuer", group: "cert-manager.io" },
        },
      },
    });
    expect(kinds(manifests)).not.toContain("Issuer");
    expect(manifests.filter((m) => m.kind === "Certificate")).toHaveLength(1);
    expect(only(manifests, "Certificate", "dso-tls")["spec"]).toMatchObject({
      issuerRef: { name: "corp-ca", kind: "ClusterIssuer", group: "cert-manager.io" },
    });
  });

  it("self-signed: the webhook bootstraps, with access to its own Secret and webhook configuration only", async () => {
    const manifests = await helm.render({ certificates: { mode: "self-signed" } });
    expect(kinds(manifests)).not.toContain("Secret");
    expect(kinds(manifests)).not.toContain("Certificate");
    expect("caBundle" in webhookOf(manifests).clientConfig).toBe(false);
    expect(only(manifests, "MutatingWebhookConfiguration").metadata.annotations).toBeUndefined();
    expect(envOf(manifests)).toMatchObject({
      DSO_CERT_MODE: "self-signed",
      DSO_SELF_SIGNED_SECRET: "dso-bootstrap-tls",
      DSO_WEBHOOK_CONFIG_NAME: "dso",
    });
    expect(envOf(manifests)["DSO_TLS_CERT"]).toBeUndefined();
    const spec = (only(manifests, "Deployment") as Deployment).spec.template.spec;
    expect(spec.volumes.map((v) => v.name)).toEqual(["policy", "tmp"]);
    expect(spec.automountServiceAccountToken).toBe(true);

    const role = only(manifests, "Role", "dso") as Role;
    expect(role.metadata.namespace).toBe(NS);
    expect(role.rules).toEqual([
      { apiGroups: [""], resources: ["secrets"], verbs: ["create"] },
      {
        apiGroups: [""],
        resources: ["secrets"],
        resourceNames: ["dso-bootstrap-tls"],
        verbs: ["get", "update"],
      },
    ]);
    expect((only(manifests, "ClusterRole", "dso") as Role).rules).toEqual([
      {
        apiGroups: ["admissionregistration.k8s.io"],
        resources: ["mutatingwebhookconfigurations"],
        resourceNames: ["dso"],
        verbs: ["get", "patch"],
      },
    ]);
    for (const kind of ["RoleBinding", "ClusterRoleBinding"]) {
      expect(only(manifests, kind, "dso")).toMatchObject({
        roleRef: { kind: kind.replace("Binding", ""), name: "dso" },
        subjects: [{ kind: "ServiceAccount", name: "dso", namespace: NS }],
      });
    }
  });

  it("self-signed with a custom Secret and configuration name: RBAC follows the names", async () => {
    const manifests = await helm.render({
      certificates: { mode: "self-signed", selfSigned: { secretName: "my-webhook-certs" } },
      webhook: { configurationName: "dso.example.com" },
    });
    expect(only(manifests, "MutatingWebhookConfiguration").metadata.name).toBe("dso.example.com");
    expect(envOf(manifests)).toMatchObject({
      DSO_SELF_SIGNED_SECRET: "my-webhook-certs",
      DSO_WEBHOOK_CONFIG_NAME: "dso.example.com",
    });
    const names = rbacRules(manifests).flatMap((rule) => rule.resourceNames ?? []);
    expect(names.sort()).toEqual(["dso.example.com", "my-webhook-certs"]);
  });

  it("helm: reuses nothing when no Secret exists, so each fresh render generates a new CA", async () => {
    // `lookup` sees no cluster under helm template: this is the install path (genCA). Upgrades take
    // the lookup path, which only a real API server exercises (the end-to-end suite).
    const first = await helm.render({});
    const second = await helm.render({});
    const ca = (m: Manifest[]): string =>
      (only(m, "Secret", "dso-tls")["data"] as Record<string, string>)["ca.crt"] ?? "";
    expect(ca(first)).not.toBe(ca(second));
    expect(webhookOf(second).clientConfig.caBundle).toBe(ca(second));
  });
});

describe.concurrent("helm mode on upgrade", () => {
  // `lookup` needs a cluster, so the decision it feeds is rendered with a Secret handed in.
  const decide = async (data: Record<string, string>): Promise<Record<string, unknown>> => {
    const entries = Object.entries(data)
      .map(([key, value]) => `${JSON.stringify(key)} (b64enc ${JSON.stringify(value)})`)
      .join(" ");
    const existing = `(dict "data" (dict ${entries}))`;
    const json = await helm.renderExpression(
      {},
      `include "dso.helmCertificateFor" (dict "ctx" . "existing" ${existing})`,
    );
    return JSON.parse(json) as Record<string, unknown>;
  };

  it("reuses the certificate of the existing Secret", async () => {
    const existing = { "ca.crt": "CA PEM", "tls.crt": "CERT PEM", "tls.key": "KEY PEM" };
    expect(await decide(existing)).toEqual({
      ca: "CA PEM",
      cert: "CERT PEM",
      key: "KEY PEM",
      generated: false,
    });
  });

  it("generates a new one when the existing Secret is incomplete", async () => {
    const decision = await decide({ "ca.crt": "CA PEM", "tls.crt": "CERT PEM" });
    expect(decision["generated"]).toBe(true);
    expect(decision["ca"]).toContain("-----BEGIN CERTIFICATE-----");
  });
});

describe.concurrent("RBAC is only what the modes need", () => {
  const cases = [
    { mode: "helm", readServiceAccounts: false, secrets: false, webhookConfig: false },
    { mode: "helm", readServiceAccounts: true, secrets: false, webhookConfig: false },
    { mode: "cert-manager", readServiceAccounts: false, secrets: false, webhookConfig: false },
    { mode: "cert-manager", readServiceAccounts: true, secrets: false, webhookConfig: false },
    { mode: "self-signed", readServiceAccounts: false, secrets: true, webhookConfig: true },
    { mode: "self-signed", readServiceAccounts: true, secrets: true, webhookConfig: true },
  ];
  it.each(cases)(
    "$mode, readServiceAccounts $readServiceAccounts",
    async ({ mode, readServiceAccounts, secrets, webhookConfig }) => {
      const manifests = await helm.render({
        certificates: { mode },
        policy: { readServiceAccounts },
      });
      const rules = rbacRules(manifests);
      const touches = (resource: string): boolean =>
        rules.some((r) => r.resources.includes(resource));
      expect(touches("secrets")).toBe(secrets);
      expect(touches("mutatingwebhookconfigurations")).toBe(webhookConfig);
      expect(touches("serviceaccounts")).toBe(readServiceAccounts);
      for (const rule of rules) {
        expect(rule.verbs).not.toContain("*");
        expect(rule.resources).not.toContain("*");
        expect(rule.verbs).not.toContain("delete");
        if (rule.resources.includes("secrets")) {
          // Listing or watching would expose every Secret in the namespace.
          expect(rule.verbs.filter((verb) => verb === "list" || verb === "watch")).toEqual([]);
        }
      }
      if (readServiceAccounts) {
        expect(rules).toContainEqual({
          apiGroups: [""],
          resources: ["serviceaccounts"],
          verbs: ["list", "watch"],
        });
      }
      const needsToken = secrets || readServiceAccounts;
      expect(
        (only(manifests, "Deployment") as Deployment).spec.template.spec
          .automountServiceAccountToken,
      ).toBe(needsToken);
    },
  );
});

describe.concurrent("webhook settings", () => {
  it("failurePolicy, timeout and extra excluded namespaces reach the webhook and the safety net", async () => {
    const manifests = await helm.render(
      {
        webhook: {
          failurePolicy: "Ignore",
          timeoutSeconds: 5,
          excludeNamespaces: ["cert-manager", "security"],
        },
      },
      { namespace: "security" },
    );
    const selector = {
      matchExpressions: [
        {
          key: "kubernetes.io/metadata.name",
          operator: "NotIn",
          values: ["kube-system", "security", "cert-manager"],
        },
      ],
    };
    expect(webhookOf(manifests)).toMatchObject({
      failurePolicy: "Ignore",
      timeoutSeconds: 5,
      namespaceSelector: selector,
    });
    const vap = only(manifests, "ValidatingAdmissionPolicy");
    expect((vap["spec"] as { matchConstraints: unknown }).matchConstraints).toMatchObject({
      namespaceSelector: selector,
    });
  });

  it("webhook.url replaces the Service reference and takes the given caBundle", async () => {
    const caBundle = Buffer.from(
      "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    ).toString("base64");
    const manifests = await helm.render({
      webhook: { url: "https://127.0.0.1:9443/mutate", caBundle },
    });
    expect(webhookOf(manifests).clientConfig).toEqual({
      url: "https://127.0.0.1:9443/mutate",
      caBundle,
    });
  });

  it("the safety net can be switched off or set to warn", async () => {
    const off = await helm.render({ validatingAdmissionPolicy: { enabled: false } });
    expect(kinds(off)).not.toContain("ValidatingAdmissionPolicy");
    expect(kinds(off)).not.toContain("ValidatingAdmissionPolicyBinding");
    const warn = await helm.render({
      validatingAdmissionPolicy: { validationActions: ["Warn", "Audit"] },
    });
    expect(only(warn, "ValidatingAdmissionPolicyBinding")["spec"]).toMatchObject({
      validationActions: ["Warn", "Audit"],
    });
  });

  it("a single replica gets no PodDisruptionBudget (it would block node drains)", async () => {
    const manifests = await helm.render({ replicaCount: 1 });
    expect(kinds(manifests)).not.toContain("PodDisruptionBudget");
    expect((only(manifests, "Deployment") as Deployment).spec.replicas).toBe(1);
  });

  it("pins the image by digest and passes the log level", async () => {
    const digest = `sha256:${"a".repeat(64)}`;
    const manifests = await helm.render({
      image: { repository: "registry.example.com/dso-webhook", tag: "9.9.9", digest },
      logLevel: "debug",
    });
    expect(container(manifests).image).toBe(`registry.example.com/dso-webhook@${digest}`);
    expect(envOf(manifests)["DSO_LOG_LEVEL"]).toBe("debug");
  });

  it("keeps every name within 63 characters and its suffix", async () => {
    // Helm allows 53 characters; "<release>-dso" plus a suffix needs truncating.
    const release = `payments-platform-secrets-${"x".repeat(27)}`;
    expect(release).toHaveLength(53);
    const manifests = await helm.render({}, { release });
    for (const m of manifests) expect(m.metadata.name.length).toBeLessThanOrEqual(63);
    const names = manifests.map((m) => m.metadata.name);
    expect(names.some((n) => n.endsWith("-policy"))).toBe(true);
    expect(names.some((n) => n.endsWith("-tls"))).toBe(true);
    expect(names.some((n) => n.endsWith("-require-injection"))).toBe(true);
    const spec = (only(manifests, "Deployment") as Deployment).spec.template.spec;
    const policyVolume = spec.volumes.find((v) => v.name === "policy");
    expect(names).toContain(policyVolume?.configMap?.name);
  });
});

describe.concurrent("optional NetworkPolicy and ServiceMonitor", () => {
  it("NetworkPolicy: ingress on the webhook port; no egress unless the webhook needs the API", async () => {
    const quiet = await helm.render({ networkPolicy: { enabled: true } });
    expect(only(quiet, "NetworkPolicy")["spec"]).toMatchObject({
      policyTypes: ["Ingress", "Egress"],
      ingress: [{ ports: [{ port: "https", protocol: "TCP" }] }],
      egress: [],
    });
    const talking = await helm.render({
      networkPolicy: { enabled: true, apiServerTo: [{ ipBlock: { cidr: "10.96.0.1/32" } }] },
      certificates: { mode: "self-signed" },
    });
    const egress = (only(talking, "NetworkPolicy")["spec"] as { egress: unknown[] }).egress;
    expect(egress[0]).toEqual({
      ports: [
        { port: 443, protocol: "TCP" },
        { port: 6443, protocol: "TCP" },
      ],
      to: [{ ipBlock: { cidr: "10.96.0.1/32" } }],
    });
  });

  it("ServiceMonitor: scrapes /metrics over HTTPS, verifying with the chart's CA", async () => {
    const manifests = await helm.render({
      serviceMonitor: { enabled: true, labels: { release: "prom" } },
    });
    const monitor = only(manifests, "ServiceMonitor");
    expect(monitor.metadata.labels?.["release"]).toBe("prom");
    expect(monitor["spec"]).toMatchObject({
      endpoints: [
        {
          port: "https",
          path: "/metrics",
          scheme: "https",
          tlsConfig: {
            serverName: `dso.${NS}.svc`,
            ca: { secret: { name: "dso-tls", key: "ca.crt" } },
          },
        },
      ],
    });
  });
});

describe.concurrent("injection policy", () => {
  it("renders a full policy from values, field for field, that the webhook loads", async () => {
    const policy: Record<keyof Policy, unknown> = {
      defaults: {
        provider: "vault",
        "vault-address": "https://vault.vault.svc:8200",
        "vault-auth-path": "auth/kubernetes",
        refresh: "5m",
        "mount-path": "/var/run/secrets/dso",
      },
      allowOverrides: ["vault-role", "refresh"],
      agent: {
        image: "registry.example.com/dso-agent:1.2.3",
        imagePullPolicy: "Always",
        sidecarStyle: "classic",
        runAsUser: 10001,
        filesGroup: 10002,
        fileMode: "0640",
        tokenExpirationSeconds: 900,
        revokeOnShutdown: false,
        telemetryPort: 9099,
      },
      readServiceAccounts: true,
      namespaces: [
        { match: ["sandbox"], injection: false },
        {
          match: ["team-a-*", "team-a"],
          allowedProviders: ["vault"],
          allowedVaultAddresses: ["https://vault.vault.svc:8200"],
          allowedVaultRoles: ["team-a"],
        },
        { match: ["*"], allowedProviders: ["vault", "azure"], allowedAzureVaults: ["corp-kv"] },
      ],
    };
    const manifests = await helm.render({ policy });
    expect(policyOf(manifests)).toEqual({
      apiVersion: "dso.io/v1",
      kind: "InjectionPolicy",
      ...policy,
    });
    const loaded = loadedPolicyOf(manifests);
    expect(loaded.agent).toEqual({ ...(policy.agent as AgentPolicy), fileMode: 0o640 });
    expect(loaded.allowOverrides).toEqual(["vault-role", "refresh"]);
    expect(loaded.readServiceAccounts).toBe(true);
    expect(loaded.namespaces.map((rule) => rule.match)).toEqual([
      ["sandbox"],
      ["team-a-*", "team-a"],
      ["*"],
    ]);
    expect(loaded.namespaces[0]?.injection).toBe(false);
    expect(loaded.defaults).toMatchObject(policy.defaults as Policy["defaults"]);
  });

  it("fills in the agent image from the chart's appVersion and keeps fileMode an octal string", async () => {
    const manifests = await helm.render({ policy: { agent: { fileMode: "0640" } } });
    const configMap = only(manifests, "ConfigMap", "dso-policy");
    const text = (configMap["data"] as Record<string, string>)["policy.yaml"] ?? "";
    expect(text.startsWith("apiVersion: dso.io/v1\nkind: InjectionPolicy\n")).toBe(true);
    expect(text).toContain('fileMode: "0640"');
    expect(policyOf(manifests)).toMatchObject({ agent: { ...defaultAgent, fileMode: "0640" } });
  });
});

describe.concurrent("values.yaml and values.schema.json", () => {
  interface SchemaNode {
    type?: string | string[];
    properties?: Record<string, SchemaNode>;
    additionalProperties?: boolean | SchemaNode;
    items?: SchemaNode;
    enum?: string[];
    definitions?: Record<string, SchemaNode>;
    $ref?: string;
  }
  const schema = JSON.parse(
    readFileSync(join(CHART_DIR, "values.schema.json"), "utf8"),
  ) as SchemaNode;
  const resolve = (node: SchemaNode | undefined): SchemaNode => {
    const name = node?.$ref?.replace("#/definitions/", "");
    return (name === undefined ? node : schema.definitions?.[name]) ?? {};
  };
  const at = (path: string): SchemaNode =>
    path.split(".").reduce((node, key) => resolve(resolve(node).properties?.[key]), schema);
  const keys = (node: SchemaNode): string[] => Object.keys(node.properties ?? {}).sort();

  it("mirrors the Policy type of packages/core", () => {
    const policyKeys: Record<keyof Policy, true> = {
      defaults: true,
      allowOverrides: true,
      agent: true,
      readServiceAccounts: true,
      namespaces: true,
    };
    const ruleKeys: Record<keyof NamespaceRule, true> = {
      match: true,
      injection: true,
      allowedProviders: true,
      allowedVaultAddresses: true,
      allowedVaultRoles: true,
      allowedAzureVaults: true,
    };
    expect(keys(at("policy"))).toEqual(Object.keys(policyKeys).sort());
    expect(keys(at("policy.defaults"))).toEqual([...SETTING_NAMES].sort());
    expect(at("policy.allowOverrides").items?.enum?.slice().sort()).toEqual(
      [...SETTING_NAMES, "*"].sort(),
    );
    expect(keys(at("policy.agent"))).toEqual(Object.keys(defaultAgent).sort());
    expect(keys(resolve(at("policy.namespaces").items))).toEqual(Object.keys(ruleKeys).sort());
  });

  it("refuses unknown keys in every object the chart defines", () => {
    const open: string[] = [];
    const visit = (node: SchemaNode, path: string): void => {
      if (node.properties !== undefined && node.additionalProperties !== false) open.push(path);
      for (const [key, child] of Object.entries(node.properties ?? {}))
        visit(child, `${path}.${key}`);
      if (node.items !== undefined) visit(node.items, `${path}[]`);
    };
    visit(schema, "");
    for (const [name, node] of Object.entries(schema.definitions ?? {})) visit(node, `#${name}`);
    expect(open).toEqual([]);
    expect(at("certificates.mode").enum).toEqual(["cert-manager", "helm", "self-signed"]);
  });

  it("documents every value with a ## @param line", () => {
    const text = readFileSync(join(CHART_DIR, "values.yaml"), "utf8");
    const documented = [...text.matchAll(/^\s*## @param (\S+) \S/gm)].map((m) => m[1] ?? "");
    const leaves: string[] = [];
    const walk = (value: unknown, path: string): void => {
      const isMap = typeof value === "object" && value !== null && !Array.isArray(value);
      if (isMap && Object.keys(value).length > 0) {
        for (const [key, child] of Object.entries(value)) {
          walk(child, path === "" ? key : `${path}.${key}`);
        }
      } else {
        leaves.push(path);
      }
    };
    walk(parseYaml(text), "");
    expect(leaves.length).toBeGreaterThan(50);
    expect(leaves.filter((leaf) => !documented.includes(leaf))).toEqual([]);
    expect(documented.filter((param) => !leaves.includes(param))).toEqual([]);
  });
});

describe.concurrent("invalid values fail with a message naming them", () => {
  it.each([
    [{ replicaCount: "two" }, ["/replicaCount", "got string, want integer"]],
    [{ replicaCont: 2 }, ["additional properties 'replicaCont' not allowed"]],
    [{ webhook: { failurePolicy: "ignore" } }, ["/webhook/failurePolicy"]],
    [{ webhook: { timeoutSeconds: 60 } }, ["/webhook/timeoutSeconds"]],
    [{ webhook: { timeOutSeconds: 5 } }, ["/webhook", "'timeOutSeconds' not allowed"]],
    [{ certificates: { mode: "vault" } }, ["/certificates/mode"]],
    [
      { podSecurityContext: { runAsNonroot: true } },
      ["/podSecurityContext", "'runAsNonroot' not allowed"],
    ],
    [
      { policy: { defaults: { "vault-adress": "https://v" } } },
      ["/policy/defaults", "'vault-adress' not allowed"],
    ],
    [{ policy: { defaults: { provider: "aws" } } }, ["/policy/defaults/provider"]],
    [{ policy: { allowOverrides: ["secret-db"] } }, ["/policy/allowOverrides/0"]],
    [
      { policy: { agent: { fileMode: 288 } } },
      ["/policy/agent/fileMode", "got number, want string"],
    ],
    [{ policy: { agent: { runAsUser: 0 } } }, ["/policy/agent/runAsUser"]],
    [
      { policy: { agent: { tokenExpirationSeconds: 60 } } },
      ["/policy/agent/tokenExpirationSeconds"],
    ],
    [
      { policy: { namespaces: [{ injection: false }] } },
      ["/policy/namespaces/0", "missing property 'match'"],
    ],
    [
      { policy: { namespaces: [{ match: ["a"], allowedProviders: ["aws"] }] } },
      ["/policy/namespaces/0/allowedProviders/0"],
    ],
    [{ policy: { readServiceAccounts: "yes" } }, ["/policy/readServiceAccounts", "want boolean"]],
  ])("%j", async (values, expected) => {
    const result = await helm.template(values);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("values don't meet the specifications of the schema");
    for (const text of expected) expect(result.stderr).toContain(text);
  });

  it("collects every rule the schema cannot express into one failure", async () => {
    const result = await helm.template({
      webhook: { url: "http://127.0.0.1:9443/mutate" },
      policy: {
        agent: { fileMode: "0444" },
        allowOverrides: ["*", "refresh"],
        namespaces: [{ match: ["team-*"] }, { match: ["team-*"], injection: false }],
      },
      validatingAdmissionPolicy: { validationActions: ["Deny", "Warn"] },
      podDisruptionBudget: { minAvailable: 2 },
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr.match(/INVALID VALUES/g)).toHaveLength(1);
    for (const text of [
      'webhook.url: "http://127.0.0.1:9443/mutate" must start with https://',
      'webhook.caBundle: required with webhook.url when certificates.mode is "helm"',
      'policy.agent.fileMode: "0444" grants access to other users',
      '"*" already allows every setting',
      'policy.namespaces[1].match: "team-*" is already matched by policy.namespaces[0]',
      "Deny and Warn cannot be combined",
      "podDisruptionBudget.minAvailable: 2 must be less than replicaCount (2)",
    ]) {
      expect(result.stderr).toContain(text);
    }
  });

  it("rejects a namespace rule after a catch-all rule, since the first match applies", async () => {
    const result = await helm.template({
      policy: { namespaces: [{ match: ["*"] }, { match: ["team-a"], injection: false }] },
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(
      'policy.namespaces[1]: never applies, because policy.namespaces[0] before it matches every namespace ("*")',
    );
  });

  it("rejects a file mode the application's group could not read", async () => {
    const result = await helm.template({ policy: { agent: { fileMode: "0600" } } });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('policy.agent.fileMode: "0600" does not let the group read');
  });

  it.each([
    [
      { webhook: { caBundle: "not-base64-pem", url: "https://127.0.0.1:9443/mutate" } },
      "webhook.caBundle: must be a base64-encoded PEM certificate bundle",
    ],
    [
      { webhook: { caBundle: Buffer.from("-----BEGIN CERTIFICATE-----\n").toString("base64") } },
      "webhook.caBundle: only applies with webhook.url",
    ],
    [
      { certificates: { mode: "cert-manager" }, webhook: { url: "https://127.0.0.1:9443/mutate" } },
      "webhook.url: cannot be used with certificates.mode cert-manager",
    ],
  ])("refuses %j", async (values, message) => {
    const result = await helm.template(values);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
  });

  it("accepts webhook.url without caBundle in self-signed mode (the webhook writes it)", async () => {
    const manifests = await helm.render({
      certificates: { mode: "self-signed" },
      webhook: { url: "https://127.0.0.1:9443/mutate" },
    });
    expect(webhookOf(manifests).clientConfig).toEqual({ url: "https://127.0.0.1:9443/mutate" });
  });
});

describe.concurrent("NOTES.txt", () => {
  it("shows a copy-pasteable annotated Deployment and no warnings for the defaults", async () => {
    const notes = await helm.notes({});
    expect(notes).not.toContain("WARNINGS");
    const start = notes.indexOf("apiVersion: apps/v1");
    const end = notes.indexOf("\n\n", start);
    expect(start).toBeGreaterThan(-1);
    const snippet = parseYaml(notes.slice(start, end)) as Deployment & {
      spec: { template: { metadata: { annotations: Record<string, string> } } };
    };
    expect(snippet.kind).toBe("Deployment");
    expect(snippet.spec.template.metadata.annotations).toMatchObject({
      "dso.io/inject": "true",
      "dso.io/provider": "vault",
      "dso.io/secret-password": "secret/data/demo/db#password",
    });
  });

  it("leaves out annotations the policy already defaults", async () => {
    const notes = await helm.notes({
      policy: { defaults: { provider: "vault", "vault-address": "https://vault:8200" } },
    });
    expect(notes).not.toContain("dso.io/provider");
    expect(notes).not.toContain("dso.io/vault-address");
    expect(notes).toContain("dso.io/inject");
  });

  it.each([
    [
      { webhook: { failurePolicy: "Ignore" }, validatingAdmissionPolicy: { enabled: false } },
      "start WITHOUT their secrets",
    ],
    [{ replicaCount: 1 }, "replicaCount is 1 with failurePolicy Fail"],
    [{ certificates: { mode: "self-signed" } }, "/webhooks/*/clientConfig/caBundle"],
    [
      { policy: { readServiceAccounts: true } },
      "list and watch ServiceAccounts in every namespace",
    ],
    [
      { validatingAdmissionPolicy: { validationActions: ["Warn"] } },
      "uninjected pods are reported but still admitted",
    ],
  ])("warns about %j", async (values, warning) => {
    const notes = await helm.notes(values);
    expect(notes).toContain("WARNINGS:");
    expect(notes).toContain(warning);
  });
});
