/**
 * Step two of the mutation: the agent containers and volumes built from an InjectionSpec.
 */
import type {
  Container,
  EnvVar,
  ResourceRequirements,
  Volume,
  VolumeMount,
} from "./kubernetes-types.js";
import {
  AGENT_CONFIG_API_VERSION,
  AGENT_CONFIG_ENV,
  AGENT_CONFIG_KIND,
  type AgentConfig,
} from "./agent-config.js";
import {
  APPROLE_DIR,
  APPROLE_VOLUME,
  AZURE_DEFAULT_AUTHORITY_HOST,
  AZURE_TOKEN_AUDIENCE,
  AZURE_TOKEN_DIR,
  AZURE_TOKEN_FILE,
  AZURE_TOKEN_VOLUME,
  INIT_CONTAINER_NAME,
  KUBE_API_DIR,
  KUBE_API_VOLUME,
  POD_NAME_ENV,
  SECRETS_VOLUME,
  SECRETS_VOLUME_SIZE,
  SIDECAR_CONTAINER_NAME,
  STATE_PATH,
  STATE_VOLUME,
  STATE_VOLUME_SIZE,
  TOKEN_DIR,
  TOKEN_FILE,
  TOKEN_VOLUME,
  VAULT_CA_DIR,
  VAULT_CA_VOLUME,
} from "./agent-paths.js";
import type { InjectionSpec } from "./injection-spec.js";
import type { AgentPolicy } from "./policy-types.js";
import { agentSecurityContext } from "./security-context.js";

/** Agent resources when the pod sets none: small requests, a memory limit, no CPU limit (throttling a refresh is worse than a brief burst). */
export const DEFAULT_AGENT_CPU_REQUEST = "25m";
export const DEFAULT_AGENT_MEMORY_REQUEST = "32Mi";
export const DEFAULT_AGENT_MEMORY_LIMIT = "64Mi";

/** What the agent containers need besides the spec: the volumes, config and containers. */
export interface AgentParts {
  config: AgentConfig;
  volumes: Volume[];
  init?: Container;
  sidecar?: Container;
}

interface TokenPlan {
  /** Audience of dso-agent-token, if the pod needs it. */
  mainAudience?: string;
  /** The Azure federated token file, if workload identity is used. */
  azureTokenFile?: string;
  /** A second token for Azure when dso-agent-token carries Vault's audience. */
  azureVolume: boolean;
}

function planTokens(spec: InjectionSpec): TokenPlan {
  const vaultAudience = spec.vault?.audience;
  const azureToken = spec.azure?.needsToken === true;
  if (vaultAudience !== undefined) {
    return azureToken
      ? { mainAudience: vaultAudience, azureTokenFile: AZURE_TOKEN_FILE, azureVolume: true }
      : { mainAudience: vaultAudience, azureVolume: false };
  }
  return azureToken
    ? { mainAudience: AZURE_TOKEN_AUDIENCE, azureTokenFile: TOKEN_FILE, azureVolume: false }
    : { azureVolume: false };
}

/** The AgentConfig passed in DSO_AGENT_CONFIG; it holds references, never values. */
export function buildAgentConfig(spec: InjectionSpec, agent: AgentPolicy): AgentConfig {
  const tokens = planTokens(spec);
  const config: AgentConfig = {
    apiVersion: AGENT_CONFIG_API_VERSION,
    kind: AGENT_CONFIG_KIND,
    mountPath: spec.mountPath,
    statePath: STATE_PATH,
    refreshSeconds: spec.refreshSeconds,
    fileMode: agent.fileMode,
    secrets: spec.secrets,
  };
  if (spec.onChange !== undefined) config.onChange = spec.onChange;
  if (spec.vault !== undefined) {
    config.vault = { ...spec.vault.config };
    if (spec.vault.audience !== undefined) config.vault.tokenFile = TOKEN_FILE;
  }
  if (spec.azure !== undefined) {
    config.azure = { ...spec.azure.config };
    if (tokens.azureTokenFile !== undefined) config.azure.tokenFile = tokens.azureTokenFile;
  }
  config.pod = { namespace: spec.namespace, serviceAccount: spec.serviceAccount };
  config.telemetryPort = agent.telemetryPort;
  return config;
}

function tokenVolume(name: string, expirationSeconds: number, audience?: string): Volume {
  return {
    name,
    projected: {
      sources: [
        {
          serviceAccountToken:
            audience === undefined
              ? { expirationSeconds, path: "token" }
              : { audience, expirationSeconds, path: "token" },
        },
      ],
    },
  };
}

/** Builds the agent's volumes, configuration and containers. */
export function buildAgentParts(
  spec: InjectionSpec,
  agent: AgentPolicy,
  filesGroup: number,
): AgentParts {
  const tokens = planTokens(spec);
  const config = buildAgentConfig(spec, agent);
  const expiration = agent.tokenExpirationSeconds;

  const volumes: Volume[] = [
    { name: SECRETS_VOLUME, emptyDir: { medium: "Memory", sizeLimit: SECRETS_VOLUME_SIZE } },
    { name: STATE_VOLUME, emptyDir: { medium: "Memory", sizeLimit: STATE_VOLUME_SIZE } },
  ];
  const mounts: VolumeMount[] = [
    { name: SECRETS_VOLUME, mountPath: spec.mountPath },
    { name: STATE_VOLUME, mountPath: STATE_PATH },
  ];
  if (tokens.mainAudience !== undefined) {
    volumes.push(tokenVolume(TOKEN_VOLUME, expiration, tokens.mainAudience));
    mounts.push({ name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true });
  }
  if (tokens.azureVolume) {
    volumes.push(tokenVolume(AZURE_TOKEN_VOLUME, expiration, AZURE_TOKEN_AUDIENCE));
    mounts.push({ name: AZURE_TOKEN_VOLUME, mountPath: AZURE_TOKEN_DIR, readOnly: true });
  }
  if (spec.vault?.caConfigMap !== undefined) {
    volumes.push({
      name: VAULT_CA_VOLUME,
      configMap: { name: spec.vault.caConfigMap, items: [{ key: "ca.crt", path: "ca.crt" }] },
    });
    mounts.push({ name: VAULT_CA_VOLUME, mountPath: VAULT_CA_DIR, readOnly: true });
  }
  if (spec.vault?.appRoleSecret !== undefined) {
    volumes.push({
      name: APPROLE_VOLUME,
      secret: {
        secretName: spec.vault.appRoleSecret,
        items: [
          { key: "role-id", path: "role-id" },
          { key: "secret-id", path: "secret-id" },
        ],
      },
    });
    mounts.push({ name: APPROLE_VOLUME, mountPath: APPROLE_DIR, readOnly: true });
  }
  const sidecarMounts = [...mounts];
  if (spec.onChange?.kind === "rollout") {
    // Default audience (the API server's) and the cluster CA, like the standard service-account volume.
    volumes.push({
      name: KUBE_API_VOLUME,
      projected: {
        sources: [
          { serviceAccountToken: { expirationSeconds: expiration, path: "token" } },
          { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
        ],
      },
    });
    sidecarMounts.push({ name: KUBE_API_VOLUME, mountPath: KUBE_API_DIR, readOnly: true });
  }

  const env: EnvVar[] = [
    { name: AGENT_CONFIG_ENV, value: JSON.stringify(config) },
    { name: POD_NAME_ENV, valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
  ];
  if (config.azure !== undefined) {
    // What @azure/identity reads, set here so DSO does not depend on the workload-identity webhook's order.
    if (config.azure.clientId !== undefined)
      env.push({ name: "AZURE_CLIENT_ID", value: config.azure.clientId });
    if (config.azure.tenantId !== undefined)
      env.push({ name: "AZURE_TENANT_ID", value: config.azure.tenantId });
    if (config.azure.tokenFile !== undefined) {
      env.push({ name: "AZURE_FEDERATED_TOKEN_FILE", value: config.azure.tokenFile });
      env.push({ name: "AZURE_AUTHORITY_HOST", value: AZURE_DEFAULT_AUTHORITY_HOST });
    }
  }

  const resources: ResourceRequirements = {
    requests: {
      cpu: spec.agentCpu,
      memory: spec.agentMemory ?? DEFAULT_AGENT_MEMORY_REQUEST,
    },
    limits: { memory: spec.agentMemory ?? DEFAULT_AGENT_MEMORY_LIMIT },
  };

  const container = (
    name: string,
    args: string[],
    volumeMounts: VolumeMount[],
    uid: number,
  ): Container => {
    const c: Container = {
      name,
      image: agent.image,
      args,
      env: env.map((e) => ({ ...e })),
      resources: structuredClone(resources),
      securityContext: agentSecurityContext(uid, filesGroup),
      volumeMounts: volumeMounts.map((m) => ({ ...m })),
      terminationMessagePolicy: "FallbackToLogsOnError",
    };
    if (agent.imagePullPolicy !== undefined) c.imagePullPolicy = agent.imagePullPolicy;
    return c;
  };

  // Both agent containers share one UID: the init container's state and files must stay the
  // sidecar's to read and replace.
  const uid = spec.signalUser ?? agent.runAsUser;
  const parts: AgentParts = { config, volumes };
  if (spec.mode !== "sidecar-only") {
    parts.init = container(INIT_CONTAINER_NAME, ["init"], mounts, uid);
  }
  if (spec.mode !== "init-only") {
    const sidecar = container(SIDECAR_CONTAINER_NAME, ["sidecar"], sidecarMounts, uid);
    if (agent.sidecarStyle === "native") sidecar.restartPolicy = "Always";
    parts.sidecar = sidecar;
  }
  return parts;
}
