/**
 * The cluster-wide injection policy (docs/policy.md). The Helm chart renders it from values into
 * a ConfigMap as YAML; the webhook loads it with `parsePolicy` and hands the result to `mutatePod`.
 *
 * Settings are named after their annotation without the `dso.io/` prefix (`vault-address`,
 * `mount-path`, ...), so a user reading a refusal can map a rule to the annotation it governs.
 */

/** Settings a policy can default and a pod can override by annotation. */
export const SETTING_NAMES = [
  "provider",
  "mount-path",
  "refresh",
  "mode",
  "on-change",
  "containers",
  "vault-address",
  "vault-role",
  "vault-auth-path",
  "vault-auth-method",
  "vault-audience",
  "vault-namespace",
  "vault-ca-configmap",
  "azure-vault",
  "azure-tenant-id",
  "azure-client-id",
  "azure-auth",
  "agent-cpu",
  "agent-memory",
] as const;

export type SettingName = (typeof SETTING_NAMES)[number];

export interface AgentPolicy {
  /** Image of the agent containers. */
  image: string;
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  /** `native`: sidecar as an init container with restartPolicy Always (Kubernetes 1.29+); `classic`: a regular container. */
  sidecarStyle: "native" | "classic";
  /** UID the agent runs as (non-root). */
  runAsUser: number;
  /** Group that owns the secret files when the pod has no fsGroup; added to the pod's supplementalGroups. */
  filesGroup: number;
  /** Mode of secret files (owner and group read). */
  fileMode: number;
  /** Expiry of the projected service-account token given to the agent. */
  tokenExpirationSeconds: number;
  /** Whether revoke-on-shutdown of dynamic leases is on. */
  revokeOnShutdown: boolean;
  /** Localhost port of the sidecar's health and metrics endpoint. */
  telemetryPort: number;
}

export interface NamespaceRule {
  /** Namespace names or globs (`team-*`); the first matching rule applies. */
  match: string[];
  /** `false` turns injection off in these namespaces: annotated pods are refused. */
  injection?: boolean;
  allowedProviders?: ("vault" | "azure")[];
  allowedVaultAddresses?: string[];
  allowedVaultRoles?: string[];
  allowedAzureVaults?: string[];
}

export interface Policy {
  /** Defaults for settings; an annotation overrides a default when `allowOverrides` permits. */
  defaults: Partial<Record<SettingName, string>>;
  /** Settings pods may set by annotation; `["*"]` (the default) allows all. */
  allowOverrides: readonly (SettingName | "*")[];
  agent: AgentPolicy;
  /** Read the service account's `azure.workload.identity/client-id` annotation as a client-id fallback. */
  readServiceAccounts: boolean;
  namespaces: NamespaceRule[];
}
