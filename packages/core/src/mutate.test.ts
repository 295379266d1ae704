import { readFileSync } from "node:fs";
import type { Container, Pod } from "./kubernetes-types.js";
import jsonpatch from "fast-json-patch";
import type { V1Pod } from "@kubernetes/client-node";
import { describe, expect, expectTypeOf, it } from "vitest";
import { parse } from "yaml";
import { AGENT_CONFIG_ENV, parseAgentConfig, type AgentConfig } from "./agent-config.js";
import {
  INIT_CONTAINER_NAME,
  KUBE_API_VOLUME,
  SECRETS_VOLUME,
  SIDECAR_CONTAINER_NAME,
  STATE_PATH,
  TOKEN_DIR,
} from "./agent-paths.js";
import { mutatePod, type MutationContext, type MutationResult } from "./mutate.js";
import { DEFAULT_POLICY, parsePolicy } from "./policy.js";
import type { Policy } from "./policy-types.js";

function fixture(name: string): Pod {
  return parse(readFileSync(new URL(`./testdata/${name}`, import.meta.url), "utf8")) as Pod;
}

function policyFrom(yaml: string): Policy {
  const parsed = parsePolicy(`apiVersion: dso.io/v1\nkind: InjectionPolicy\n${yaml}`);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  return parsed.policy;
}

/** A small pod for refusal cases, built in code like vault-k8s's testPod(annotations). */
function testPod(annotations: Record<string, string>, spec?: Partial<Pod["spec"]>): Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { generateName: "web-", annotations: { "dso.io/inject": "true", ...annotations } },
    spec: {
      containers: [
        {
          name: "web",
          image: "nginx:1.27",
          volumeMounts: [{ name: "cache", mountPath: "/var/cache/nginx" }],
        },
        { name: "worker", image: "example/worker:1" },
      ],
      initContainers: [{ name: "setup", image: "busybox:1.36" }],
      volumes: [{ name: "cache", emptyDir: {} }],
      ...spec,
    },
  };
}

const vault = {
  "dso.io/provider": "vault",
  "dso.io/vault-address": "https://vault.example.com:8200",
  "dso.io/vault-role": "web",
};

function names(containers: Container[] | undefined): string[] {
  return (containers ?? []).map((c) => c.name);
}

function agentConfigOf(container: Container | undefined): AgentConfig {
  const value = container?.env?.find((e) => e.name === AGENT_CONFIG_ENV)?.value;
  expect(value).toBeDefined();
  return JSON.parse(value ?? "") as AgentConfig;
}

/** Applies the patch to the original and checks what every injected pod must satisfy. */
function checkInjected(original: Pod, result: MutationResult, ctx: MutationContext): Pod {
  if (result.kind !== "patch") throw new Error(`expected a patch, got ${JSON.stringify(result)}`);
  const before = structuredClone(original);
  const pod = jsonpatch.applyPatch(
    structuredClone(original),
    result.patch,
    true,
    false,
  ).newDocument;
  expect(original).toEqual(before);
  expect(pod).toEqual(result.pod);
  expect(pod.metadata?.annotations?.["dso.io/injected"]).toBe("true");

  const agents = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].filter(
    (c) => c.name.startsWith("dso-agent"),
  );
  expect(agents.length).toBeGreaterThan(0);
  for (const agent of agents) {
    expect(agent.command).toBeUndefined();
    expect(agent.args).toEqual([agent.name === INIT_CONTAINER_NAME ? "init" : "sidecar"]);
    expect(agentConfigOf(agent)).toEqual(result.config);
    // What the agent will read back: the agent's own validator accepts it unchanged.
    expect(parseAgentConfig(agentConfigOf(agent))).toEqual({ ok: true, config: result.config });
    expect(agent.env?.find((e) => e.name === "DSO_POD_NAME")?.valueFrom?.fieldRef?.fieldPath).toBe(
      "metadata.name",
    );
    expect(agent.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(agent.securityContext?.runAsUser).toBeGreaterThan(0);
    const mounts = agent.volumeMounts ?? [];
    expect(mounts.find((m) => m.name === SECRETS_VOLUME)).toEqual({
      name: SECRETS_VOLUME,
      mountPath: result.config.mountPath,
    });
    expect(mounts.find((m) => m.name === "dso-agent-state")?.mountPath).toBe(STATE_PATH);
  }

  // Application containers: unchanged except for one read-only mount when selected.
  const after = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  for (const c of [
    ...(original.spec?.initContainers ?? []),
    ...(original.spec?.containers ?? []),
  ]) {
    const now = after.find((a) => a.name === c.name);
    const { volumeMounts: mountsNow, ...rest } = now ?? { name: "" };
    const { volumeMounts: mountsBefore, ...restBefore } = c;
    expect(rest).toEqual(restBefore);
    const added = (mountsNow ?? []).slice((mountsBefore ?? []).length);
    expect((mountsNow ?? []).slice(0, (mountsBefore ?? []).length)).toEqual(mountsBefore ?? []);
    expect(added.length === 0 || (added.length === 1 && added[0]?.readOnly === true)).toBe(true);
    for (const m of added)
      expect(m).toEqual({
        name: SECRETS_VOLUME,
        mountPath: result.config.mountPath,
        readOnly: true,
      });
  }
  // Regular containers keep their order.
  expect(names(pod.spec?.containers).filter((n) => n !== SIDECAR_CONTAINER_NAME)).toEqual(
    names(original.spec?.containers),
  );
  expect(pod.spec?.volumes?.find((v) => v.name === SECRETS_VOLUME)?.emptyDir).toEqual({
    medium: "Memory",
    sizeLimit: "8Mi",
  });

  // Idempotent: a second review of the injected pod changes nothing.
  expect(mutatePod(pod, ctx)).toEqual({ kind: "skip", reason: "already injected" });
  return pod;
}

describe("mutatePod: injected pods", () => {
  it("injects a Deployment-made pod (no name or namespace) with Vault", () => {
    const original = fixture("deployment-pod.yaml");
    const ctx = { namespace: "payments", policy: DEFAULT_POLICY };
    const result = mutatePod(original, ctx);
    const pod = checkInjected(original, result, ctx);
    const spec = pod.spec;
    expect(names(spec?.initContainers)).toEqual([INIT_CONTAINER_NAME, SIDECAR_CONTAINER_NAME]);
    const sidecar = spec?.initContainers?.[1];
    expect(sidecar?.restartPolicy).toBe("Always");
    expect(sidecar?.image).toBe("ghcr.io/dso-project/dso-agent:0.1.0");
    expect(sidecar?.resources).toEqual({
      requests: { cpu: "25m", memory: "32Mi" },
      limits: { memory: "64Mi" },
    });
    expect(sidecar?.securityContext).toMatchObject({ runAsUser: 65532, runAsGroup: 65532 });
    expect(sidecar?.volumeMounts?.find((m) => m.name === "dso-agent-token")).toEqual({
      name: "dso-agent-token",
      mountPath: TOKEN_DIR,
      readOnly: true,
    });
    // Every regular container mounts the files by default.
    for (const c of spec?.containers ?? []) {
      expect(c.volumeMounts).toContainEqual({
        name: SECRETS_VOLUME,
        mountPath: "/var/run/secrets/dso",
        readOnly: true,
      });
    }
    expect(spec?.volumes?.find((v) => v.name === "dso-agent-token")).toEqual({
      name: "dso-agent-token",
      projected: {
        sources: [
          { serviceAccountToken: { audience: "vault", expirationSeconds: 600, path: "token" } },
        ],
      },
    });
    expect(spec?.volumes?.find((v) => v.name === "dso-agent-state")?.emptyDir).toEqual({
      medium: "Memory",
      sizeLimit: "1Mi",
    });
    expect(spec?.securityContext?.supplementalGroups).toEqual([65532]);
    expect(pod.metadata?.name).toBeUndefined();
    expect(pod.metadata?.ownerReferences).toEqual(original.metadata?.ownerReferences);
    expect(result.kind === "patch" && result.config).toEqual({
      apiVersion: "dso.io/v1",
      kind: "AgentConfig",
      mountPath: "/var/run/secrets/dso",
      statePath: "/var/run/dso/state",
      refreshSeconds: 300,
      fileMode: 0o440,
      secrets: [
        {
          file: "api-key",
          ref: { provider: "vault", path: "secret/data/payments/stripe", key: "api_key" },
        },
        {
          file: "db-password",
          ref: { provider: "vault", path: "secret/data/payments/db", key: "password" },
        },
      ],
      vault: {
        addresses: ["https://vault.vault.svc:8200"],
        authMethod: "kubernetes",
        authPath: "auth/kubernetes",
        role: "payments-api",
        tokenFile: "/var/run/secrets/dso.io/serviceaccount/token",
        revokeOnShutdown: false,
      },
      pod: { namespace: "payments", serviceAccount: "payments-api" },
      telemetryPort: 8099,
    });
  });

  it("places the agent after a leading native sidecar and before the pod's init containers (Azure)", () => {
    const original = fixture("mesh-sidecar-pod.yaml");
    const ctx = { namespace: "shop", policy: DEFAULT_POLICY };
    const result = mutatePod(original, ctx);
    const pod = checkInjected(original, result, ctx);
    const inits = pod.spec?.initContainers ?? [];
    expect(names(inits)).toEqual([
      "istio-proxy",
      INIT_CONTAINER_NAME,
      SIDECAR_CONTAINER_NAME,
      "migrate",
    ]);
    // The selected init container and app container mount; the mesh proxy does not.
    expect(inits[0]?.volumeMounts).toBeUndefined();
    expect(inits[3]?.volumeMounts).toEqual([
      { name: SECRETS_VOLUME, mountPath: "/var/run/secrets/dso", readOnly: true },
    ]);
    expect(pod.spec?.shareProcessNamespace).toBe(true);
    // The agent runs as the signalled container's UID: signalling needs no capability then.
    expect(inits[2]?.securityContext?.runAsUser).toBe(10001);
    expect(inits[1]?.securityContext?.runAsUser).toBe(10001);
    const env = Object.fromEntries((inits[1]?.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      AZURE_CLIENT_ID: "8a5b1c9e-2d3f-4e6a-9b7c-0d1e2f3a4b5c",
      AZURE_TENANT_ID: "72f988bf-86f1-41af-91ab-2d7cd011db47",
      AZURE_FEDERATED_TOKEN_FILE: "/var/run/secrets/dso.io/serviceaccount/token",
      AZURE_AUTHORITY_HOST: "https://login.microsoftonline.com/",
    });
    expect(
      pod.spec?.volumes?.find((v) => v.name === "dso-agent-token")?.projected?.sources?.[0]
        ?.serviceAccountToken?.audience,
    ).toBe("api://AzureADTokenExchange");
    if (result.kind !== "patch") return;
    expect(result.config.secrets).toEqual([
      {
        file: "db-connection",
        ref: { provider: "azure", kind: "secret", name: "orders-db-connection" },
      },
      {
        file: "legacy",
        ref: {
          provider: "azure",
          kind: "secret",
          name: "legacy-token",
          vaultUrl: "https://shop-kv-legacy.vault.azure.net",
        },
      },
      { file: "tls.pem", ref: { provider: "azure", kind: "certificate", name: "orders-tls" } },
    ]);
    expect(result.config.azure).toEqual({
      auth: "workload-identity",
      vaultUrl: "https://shop-kv-prod.vault.azure.net",
      clientId: "8a5b1c9e-2d3f-4e6a-9b7c-0d1e2f3a4b5c",
      tenantId: "72f988bf-86f1-41af-91ab-2d7cd011db47",
      authorityHost: "https://login.microsoftonline.com/",
      tokenFile: "/var/run/secrets/dso.io/serviceaccount/token",
    });
    expect(result.config.onChange).toEqual({
      kind: "signal",
      signal: "SIGHUP",
      container: "orders",
    });
    expect(result.config.vault).toBeUndefined();
  });

  it("keeps a restrictive security context, uses fsGroup as the files group, and passes every Vault setting", () => {
    const original = fixture("restricted-pod.yaml");
    const ctx = { namespace: "analytics", policy: DEFAULT_POLICY };
    const result = mutatePod(original, ctx);
    const pod = checkInjected(original, result, ctx);
    expect(pod.spec?.securityContext).toEqual(original.spec?.securityContext);
    expect(pod.spec?.automountServiceAccountToken).toBe(false);
    const init = pod.spec?.initContainers?.[0];
    expect(init?.securityContext).toMatchObject({ runAsUser: 65532, runAsGroup: 2000 });
    expect(init?.resources).toEqual({
      requests: { cpu: "50m", memory: "48Mi" },
      limits: { memory: "48Mi" },
    });
    expect(init?.volumeMounts).toContainEqual({
      name: "dso-vault-ca",
      mountPath: "/var/run/dso/vault-ca",
      readOnly: true,
    });
    expect(pod.spec?.volumes?.find((v) => v.name === "dso-vault-ca")).toEqual({
      name: "dso-vault-ca",
      configMap: { name: "vault-ca", items: [{ key: "ca.crt", path: "ca.crt" }] },
    });
    expect(pod.spec?.containers[0]?.volumeMounts?.at(-1)).toEqual({
      name: SECRETS_VOLUME,
      mountPath: "/etc/reports/secrets",
      readOnly: true,
    });
    if (result.kind !== "patch") return;
    expect(result.config.refreshSeconds).toBe(5400);
    expect(result.config.onChange).toEqual({ kind: "http", url: "http://127.0.0.1:8081/-/reload" });
    expect(result.config.vault).toEqual({
      addresses: ["https://vault-0.example.com:8200", "https://vault-1.example.com:8200"],
      authMethod: "jwt",
      authPath: "auth/jwt-k8s",
      role: "reports",
      tokenFile: "/var/run/secrets/dso.io/serviceaccount/token",
      namespace: "analytics",
      caFile: "/var/run/dso/vault-ca/ca.crt",
      revokeOnShutdown: false,
    });
    expect(result.config.secrets.find((s) => s.file === "db.env")).toEqual({
      file: "db.env",
      ref: { provider: "vault", path: "database/creds/reports" },
      template: "DB_USER={{username}}\nDB_PASSWORD={{password}}\n",
    });
    expect(
      pod.spec?.volumes?.find((v) => v.name === "dso-agent-token")?.projected?.sources?.[0]
        ?.serviceAccountToken?.audience,
    ).toBe("https://vault.example.com");
  });

  it("injects a pod with 50 secrets", () => {
    const original = fixture("many-secrets-pod.yaml");
    const ctx = { namespace: "batch", policy: DEFAULT_POLICY };
    const result = mutatePod(original, ctx);
    checkInjected(original, result, ctx);
    if (result.kind !== "patch") return;
    expect(result.config.secrets).toHaveLength(50);
    expect(result.config.secrets[49]).toEqual({
      file: "credential-49",
      ref: { provider: "vault", path: "secret/data/batch/credential-49", key: "value" },
    });
  });

  const cases: {
    name: string;
    pod: Pod;
    ctx?: Partial<MutationContext>;
    check: (pod: Pod, config: AgentConfig) => void;
  }[] = [
    {
      name: "classic sidecar style appends the sidecar to containers",
      pod: testPod({ ...vault, "dso.io/secret-a": "secret/data/a#k" }),
      ctx: { policy: policyFrom("agent:\n  sidecarStyle: classic\n") },
      check: (pod) => {
        expect(names(pod.spec?.initContainers)).toEqual([INIT_CONTAINER_NAME, "setup"]);
        expect(names(pod.spec?.containers)).toEqual(["web", "worker", SIDECAR_CONTAINER_NAME]);
        expect(pod.spec?.containers[2]?.restartPolicy).toBeUndefined();
      },
    },
    {
      name: "init-only adds no sidecar",
      pod: testPod({ ...vault, "dso.io/mode": "init-only", "dso.io/secret-a": "secret/data/a#k" }),
      check: (pod) => {
        expect(names(pod.spec?.initContainers)).toEqual([INIT_CONTAINER_NAME, "setup"]);
      },
    },
    {
      name: "sidecar-only adds no init container",
      pod: testPod({
        ...vault,
        "dso.io/mode": "sidecar-only",
        "dso.io/secret-a": "secret/data/a#k",
      }),
      check: (pod) => {
        expect(names(pod.spec?.initContainers)).toEqual([SIDECAR_CONTAINER_NAME, "setup"]);
      },
    },
    {
      name: "on-change rollout gives only the sidecar a Kubernetes API token",
      pod: testPod({
        ...vault,
        "dso.io/on-change": "rollout",
        "dso.io/secret-a": "secret/data/a#k",
      }),
      check: (pod, config) => {
        expect(config.onChange).toEqual({ kind: "rollout" });
        const [init, sidecar] = pod.spec?.initContainers ?? [];
        expect(init?.volumeMounts?.some((m) => m.name === KUBE_API_VOLUME)).toBe(false);
        expect(sidecar?.volumeMounts).toContainEqual({
          name: KUBE_API_VOLUME,
          mountPath: "/var/run/secrets/dso.io/kube-api",
          readOnly: true,
        });
        expect(
          pod.spec?.volumes?.find((v) => v.name === KUBE_API_VOLUME)?.projected?.sources,
        ).toEqual([
          { serviceAccountToken: { expirationSeconds: 600, path: "token" } },
          { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
        ]);
      },
    },
    {
      name: "selected init container and named containers only",
      pod: testPod({
        ...vault,
        "dso.io/containers": " setup ,worker",
        "dso.io/secret-a": "secret/data/a#k",
      }),
      check: (pod) => {
        const mounted = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]
          .filter((c) =>
            c.volumeMounts?.some((m) => m.name === SECRETS_VOLUME && m.readOnly === true),
          )
          .map((c) => c.name);
        expect(mounted).toEqual(["setup", "worker"]);
      },
    },
    {
      name: "policy defaults supply provider and address; service-account annotations supply the Azure identity",
      pod: testPod({
        "dso.io/secret-token": "api-token",
        "dso.io/secret-db": "vault:secret/data/db#password",
      }),
      ctx: {
        namespace: "team-a",
        policy: policyFrom(
          [
            "defaults:",
            "  provider: azure",
            "  azure-vault: https://127.0.0.1:8443",
            "  vault-address: https://vault.internal:8200",
            "  vault-role: team-a",
            "  agent-memory: 40Mi",
            "allowOverrides: [containers]",
            "agent:",
            "  image: registry.internal/dso-agent:0.1.0",
            "  imagePullPolicy: IfNotPresent",
            '  fileMode: "0640"',
            "  tokenExpirationSeconds: 900",
            "readServiceAccounts: true",
          ].join("\n"),
        ),
        serviceAccountAnnotations: {
          "azure.workload.identity/client-id": "11111111-2222-3333-4444-555555555555",
          "azure.workload.identity/tenant-id": "66666666-7777-8888-9999-000000000000",
        },
      },
      check: (pod, config) => {
        expect(config.fileMode).toBe(0o640);
        expect(config.azure).toMatchObject({
          vaultUrl: "https://127.0.0.1:8443",
          clientId: "11111111-2222-3333-4444-555555555555",
          tenantId: "66666666-7777-8888-9999-000000000000",
          tokenFile: "/var/run/secrets/dso.io/azure-identity/token",
        });
        expect(config.vault?.tokenFile).toBe("/var/run/secrets/dso.io/serviceaccount/token");
        const init = pod.spec?.initContainers?.[0];
        expect(init?.image).toBe("registry.internal/dso-agent:0.1.0");
        expect(init?.imagePullPolicy).toBe("IfNotPresent");
        expect(init?.resources?.limits).toEqual({ memory: "40Mi" });
        const audiences = (pod.spec?.volumes ?? [])
          .map((v) => v.projected?.sources?.[0]?.serviceAccountToken)
          .filter((t) => t !== undefined);
        expect(audiences).toEqual([
          { audience: "vault", expirationSeconds: 900, path: "token" },
          { audience: "api://AzureADTokenExchange", expirationSeconds: 900, path: "token" },
        ]);
      },
    },
    {
      name: "managed identity needs no projected token",
      pod: testPod({
        "dso.io/azure-auth": "managed-identity",
        "dso.io/secret-cert":
          "https://kv1.vault.azure.net/certificates/web-tls/0123456789abcdef0123456789abcdef",
      }),
      check: (pod, config) => {
        expect(pod.spec?.volumes?.some((v) => v.name === "dso-agent-token")).toBe(false);
        expect(config.azure).toEqual({ auth: "managed-identity" });
        expect(pod.spec?.initContainers?.[0]?.env?.map((e) => e.name)).toEqual([
          "DSO_AGENT_CONFIG",
          "DSO_POD_NAME",
        ]);
      },
    },
    {
      name: "AppRole mounts the credentials Secret in agent containers only",
      pod: testPod({
        ...vault,
        "dso.io/vault-auth-method": "approle",
        "dso.io/vault-role": "web-approle",
        "dso.io/secret-a": "a#b",
      }),
      check: (pod, config) => {
        expect(config.vault).toMatchObject({
          authMethod: "approle",
          roleIdFile: "/var/run/secrets/dso.io/approle/role-id",
          secretIdFile: "/var/run/secrets/dso.io/approle/secret-id",
        });
        expect(config.vault?.role).toBeUndefined();
        expect(
          pod.spec?.volumes?.find((v) => v.name === "dso-vault-approle")?.secret?.secretName,
        ).toBe("web-approle");
        expect(pod.spec?.volumes?.some((v) => v.name === "dso-agent-token")).toBe(false);
      },
    },
    {
      name: "an annotation repeating a locked policy value is accepted",
      pod: testPod({ ...vault, "dso.io/secret-a": "a#b" }),
      ctx: {
        policy: policyFrom(
          "defaults:\n  provider: vault\n  vault-address: https://vault.example.com:8200\n  vault-role: web\nallowOverrides: []\n",
        ),
      },
      check: (_pod, config) => {
        expect(config.vault?.role).toBe("web");
      },
    },
    {
      name: "existing supplementalGroups are kept and extended",
      pod: testPod(
        { ...vault, "dso.io/secret-a": "a#b" },
        { securityContext: { supplementalGroups: [4000] } },
      ),
      check: (pod) => {
        expect(pod.spec?.securityContext?.supplementalGroups).toEqual([4000, 65532]);
      },
    },
  ];

  it.each(cases)("$name", ({ pod, ctx, check }) => {
    const full: MutationContext = { namespace: "default", policy: DEFAULT_POLICY, ...ctx };
    const result = mutatePod(pod, full);
    const injected = checkInjected(pod, result, full);
    if (result.kind === "patch") check(injected, result.config);
  });
});

describe("mutatePod: skips", () => {
  it.each([
    {
      name: "no annotations",
      pod: { spec: { containers: [{ name: "a" }] } },
      reason: 'no dso.io/inject: "true" annotation',
    },
    {
      name: "inject false",
      pod: testPod({ "dso.io/inject": "false", "dso.io/secert-a": "x" }),
      reason: 'no dso.io/inject: "true" annotation',
    },
    {
      name: "already injected",
      pod: testPod({ "dso.io/injected": "true" }),
      reason: "already injected",
    },
  ])("$name", ({ pod, reason }) => {
    expect(mutatePod(pod, { namespace: "default", policy: DEFAULT_POLICY })).toEqual({
      kind: "skip",
      reason,
    });
  });
});

describe("mutatePod: refusals list every problem", () => {
  const cases: {
    name: string;
    pod: Pod;
    policy?: Policy;
    namespace?: string;
    problems: [field: string, message: RegExp][];
  }[] = [
    {
      name: "unknown keys with suggestions",
      pod: testPod({
        ...vault,
        "dso.io/secert-db": "a#b",
        "dso.io/secret-db": "a#b",
        "dso.io/vault-adress": "x",
        "dso.io/frobnicate": "1",
      }),
      problems: [
        ["dso.io/secert-db", /is not a DSO annotation \(did you mean "dso.io\/secret-db"\?\)/],
        ["dso.io/vault-adress", /did you mean "dso.io\/vault-address"/],
        ["dso.io/frobnicate", /^is not a DSO annotation$/],
      ],
    },
    {
      name: "bad file names and an orphan template",
      pod: testPod({
        ...vault,
        "dso.io/secret-": "a#b",
        "dso.io/secret-a/b": "a#b",
        "dso.io/secret-..": "a#b",
        "dso.io/template-other": "{{value}}",
      }),
      problems: [
        ["dso.io/secret-", /names no file/],
        ["dso.io/secret-..", /not a plain file name/],
        ["dso.io/secret-a/b", /not a plain file name/],
        ["dso.io/template-other", /has no matching dso.io\/secret-other/],
      ],
    },
    {
      name: "bad references and a bad template",
      pod: testPod({
        ...vault,
        "dso.io/secret-a": "/secret/data/x",
        "dso.io/secret-b": "secret//x",
        "dso.io/secret-c": "azure:bad_name",
        "dso.io/secret-d": "https://kv.vault.azure.net/keys/x",
        "dso.io/secret-e": "secret/data/e#k",
        "dso.io/template-e": "{{#rows}}{{name}}",
      }),
      problems: [
        ["dso.io/secret-a", /must not start with "\/"/],
        ["dso.io/secret-b", /empty segment/],
        ["dso.io/secret-c", /secret name "bad_name" is invalid/],
        ["dso.io/secret-d", /must look like https:\/\/<vault>/],
        ["dso.io/template-e", /template does not parse: Unclosed section "rows"/],
      ],
    },
    {
      name: "nothing to inject, missing provider settings",
      pod: testPod({ "dso.io/provider": "vault" }),
      problems: [["dso.io/inject", /nothing to inject/]],
    },
    {
      name: "no provider can be determined",
      pod: testPod({ "dso.io/secret-a": "secret/data/a#k", "dso.io/secret-b": "dso://x" }),
      problems: [
        ["dso.io/secret-a", /cannot tell which provider .* set dso.io\/provider/],
        ["dso.io/secret-b", /dso:\/\/.*none is set/],
      ],
    },
    {
      name: "Vault address and role missing, bad address",
      pod: testPod({ "dso.io/secret-a": "vault:a#b", "dso.io/secret-b": "vault:b" }),
      problems: [
        [
          "dso.io/vault-address",
          /is required for Vault references \(dso.io\/secret-a, dso.io\/secret-b\)/,
        ],
        [
          "dso.io/vault-role",
          /is required with kubernetes auth: name the Vault role bound to service account "default"/,
        ],
      ],
    },
    {
      name: "bad settings values",
      pod: testPod({
        ...vault,
        "dso.io/vault-address": "vault.example.com:8200",
        "dso.io/refresh": "2s",
        "dso.io/mode": "sidecar",
        "dso.io/provider": "vualt",
        "dso.io/vault-auth-method": "kube",
        "dso.io/agent-memory": "lots",
        "dso.io/on-change": "signal:SIGFOO:web",
        "dso.io/secret-a": "vault:a#b",
      }),
      problems: [
        ["dso.io/provider", /must be one of vault, azure \(did you mean "vault"\?\)/],
        ["dso.io/refresh", /at least 5s/],
        ["dso.io/mode", /must be one of init-and-sidecar, init-only, sidecar-only/],
        ["dso.io/on-change", /not a signal DSO can send/],
        ["dso.io/vault-address", /is not a URL|must be an http or https URL/],
        ["dso.io/vault-auth-method", /must be one of kubernetes, jwt, approle/],
        ["dso.io/agent-memory", /not a positive Kubernetes quantity/],
        ["dso.io/vault-address", /is required for Vault references/],
      ],
    },
    {
      name: "unknown containers and mount-path clashes",
      pod: testPod({
        ...vault,
        "dso.io/containers": "web, wrker",
        "dso.io/mount-path": "/var/cache",
        "dso.io/on-change": "signal:HUP:nope",
        "dso.io/secret-a": "a#b",
      }),
      problems: [
        [
          "dso.io/containers",
          /names container "wrker", which the pod does not have \(did you mean "worker"\?\)/,
        ],
        [
          "dso.io/mount-path",
          /"\/var\/cache" clashes with \/var\/cache\/nginx \(volume cache\) in container "web"/,
        ],
        ["dso.io/on-change", /signals container "nope"/],
      ],
    },
    {
      name: "relative, root and agent-reserved mount paths",
      pod: testPod({
        ...vault,
        "dso.io/mount-path": "/var/run/secrets/dso.io/mine",
        "dso.io/secret-a": "a#b",
      }),
      problems: [
        ["dso.io/mount-path", /clashes with \/var\/run\/secrets\/dso.io, which the DSO agent uses/],
      ],
    },
    {
      name: "relative mount path",
      pod: testPod({ ...vault, "dso.io/mount-path": "secrets", "dso.io/secret-a": "a#b" }),
      problems: [["dso.io/mount-path", /must be an absolute path/]],
    },
    {
      name: "Azure without vault or identity",
      pod: testPod({
        "dso.io/provider": "azure",
        "dso.io/secret-a": "db-password",
        "dso.io/on-change": "signal:HUP:web",
        "dso.io/mode": "init-only",
      }),
      problems: [
        ["dso.io/on-change", /no effect with dso.io\/mode: init-only/],
        ["dso.io/azure-vault", /is required because dso.io\/secret-a names no vault/],
        ["dso.io/azure-client-id", /is required with workload identity/],
        ["dso.io/azure-tenant-id", /is required with workload identity/],
      ],
    },
    {
      name: "signalling a root container",
      pod: testPod(
        { ...vault, "dso.io/on-change": "signal:HUP:web", "dso.io/secret-a": "a#b" },
        {
          securityContext: { runAsUser: 0 },
        },
      ),
      problems: [["dso.io/on-change", /runs as root/]],
    },
    {
      name: "leftover agent container without the marker",
      pod: testPod(
        { ...vault, "dso.io/secret-a": "a#b" },
        {
          containers: [
            { name: "web", image: "x" },
            { name: "dso-agent", image: "x" },
          ],
          volumes: [{ name: "dso-secrets", emptyDir: {} }],
        },
      ),
      problems: [
        ["spec", /already has a container named "dso-agent"/],
        ["spec.volumes", /already has a volume named "dso-secrets"/],
      ],
    },
    {
      name: "overrides the policy forbids",
      pod: testPod({
        ...vault,
        "dso.io/vault-address": "https://evil.example.com",
        "dso.io/secret-a": "a#b",
      }),
      policy: policyFrom(
        "defaults:\n  vault-address: https://vault.example.com:8200\nallowOverrides: [vault-role, provider]\n",
      ),
      problems: [
        [
          "dso.io/vault-address",
          /^the cluster policy does not allow pods to override "vault-address" \(policy allowOverrides\)$/,
        ],
      ],
    },
    {
      name: "namespace rules name the rule",
      namespace: "team-a",
      pod: testPod({
        ...vault,
        "dso.io/secret-a": "a#b",
        "dso.io/secret-b": "https://other.vault.azure.net/secrets/x",
        "dso.io/azure-tenant-id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "dso.io/azure-client-id": "8a5b1c9e-2d3f-4e6a-9b7c-0d1e2f3a4b5c",
      }),
      policy: policyFrom(
        [
          "namespaces:",
          "  - match: [kube-system]",
          "    injection: false",
          "  - match: [team-*]",
          "    allowedProviders: [vault]",
          "    allowedVaultAddresses: [https://vault.internal:8200]",
          "    allowedVaultRoles: [team-a-*]",
          "    allowedAzureVaults: [team-a-kv]",
        ].join("\n"),
      ),
      problems: [
        [
          "dso.io/secret-b",
          /^policy namespaces\[1\] \(match team-\*\) allows providers \[vault\], not "azure"$/,
        ],
        [
          "dso.io/vault-address",
          /allows Vault addresses \[https:\/\/vault.internal:8200\], not "https:\/\/vault.example.com:8200"/,
        ],
        ["dso.io/vault-role", /allows Vault roles \[team-a-\*\], not "web"/],
        [
          "dso.io/secret-b",
          /allows Azure vaults \[https:\/\/team-a-kv.vault.azure.net\], not "https:\/\/other.vault.azure.net"/,
        ],
      ],
    },
    {
      name: "injection turned off in a namespace",
      namespace: "kube-system",
      pod: testPod({ ...vault, "dso.io/secret-a": "a#b" }),
      policy: policyFrom("namespaces:\n  - match: [kube-*]\n    injection: false\n"),
      problems: [
        [
          "dso.io/inject",
          /injection is turned off in namespace "kube-system" by policy namespaces\[0\] \(match kube-\*\)/,
        ],
      ],
    },
  ];

  it.each(cases)("$name", ({ pod, policy, namespace, problems }) => {
    const result = mutatePod(pod, {
      namespace: namespace ?? "default",
      policy: policy ?? DEFAULT_POLICY,
    });
    if (result.kind !== "refuse") throw new Error(`expected a refusal, got ${result.kind}`);
    expect(result.problems.map((p) => p.field).sort()).toEqual(problems.map(([f]) => f).sort());
    for (const [field, message] of problems) {
      expect(result.problems.some((p) => p.field === field && message.test(p.message))).toBe(true);
    }
    expect(result.message.startsWith("dso: pod refused: ")).toBe(true);
    expect(result.message).not.toContain("\n");
    for (const p of result.problems) expect(result.message).toContain(`${p.field}: ${p.message}`);
  });
});

describe("types", () => {
  it("accepts @kubernetes/client-node's V1Pod", () => {
    expectTypeOf<V1Pod>().toExtend<Parameters<typeof mutatePod>[0]>();
  });
});
