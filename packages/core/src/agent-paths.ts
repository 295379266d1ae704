/**
 * Names and paths shared by the webhook (which builds the pod) and the agent (which reads the
 * files): container and volume names, where each volume is mounted in the agent containers.
 */

export const INIT_CONTAINER_NAME = "dso-agent-init";
export const SIDECAR_CONTAINER_NAME = "dso-agent";
export const AGENT_CONTAINER_NAMES: readonly string[] = [
  INIT_CONTAINER_NAME,
  SIDECAR_CONTAINER_NAME,
];

/** The secret files: in-memory, mounted read-only in the selected containers, writable in the agent. */
export const SECRETS_VOLUME = "dso-secrets";
export const SECRETS_VOLUME_SIZE = "8Mi";
/** The agent's private state (Vault token, leases, versions) handed from init to sidecar. */
export const STATE_VOLUME = "dso-agent-state";
export const STATE_VOLUME_SIZE = "1Mi";
export const STATE_PATH = "/var/run/dso/state";
/** Projected service-account token with the backend's audience. */
export const TOKEN_VOLUME = "dso-agent-token";
export const TOKEN_DIR = "/var/run/secrets/dso.io/serviceaccount";
export const TOKEN_FILE = `${TOKEN_DIR}/token`;
/** Second token, only when a pod uses both Vault and Azure: the Azure audience differs from Vault's. */
export const AZURE_TOKEN_VOLUME = "dso-agent-azure-token";
export const AZURE_TOKEN_DIR = "/var/run/secrets/dso.io/azure-identity";
export const AZURE_TOKEN_FILE = `${AZURE_TOKEN_DIR}/token`;
export const AZURE_TOKEN_AUDIENCE = "api://AzureADTokenExchange";
export const AZURE_DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com/";
/** `dso.io/vault-ca-configmap`: the ConfigMap's `ca.crt`. */
export const VAULT_CA_VOLUME = "dso-vault-ca";
export const VAULT_CA_DIR = "/var/run/dso/vault-ca";
export const VAULT_CA_FILE = `${VAULT_CA_DIR}/ca.crt`;
/** AppRole: the Kubernetes Secret named by `dso.io/vault-role`, keys `role-id` and `secret-id`. */
export const APPROLE_VOLUME = "dso-vault-approle";
export const APPROLE_DIR = "/var/run/secrets/dso.io/approle";
export const APPROLE_ROLE_ID_FILE = `${APPROLE_DIR}/role-id`;
export const APPROLE_SECRET_ID_FILE = `${APPROLE_DIR}/secret-id`;
/**
 * `on-change: rollout`: a token for the Kubernetes API (default audience) and the cluster CA
 * (`token`, `ca.crt`), mounted only in the sidecar.
 */
export const KUBE_API_VOLUME = "dso-kube-api-token";
export const KUBE_API_DIR = "/var/run/secrets/dso.io/kube-api";
export const KUBE_API_TOKEN_FILE = `${KUBE_API_DIR}/token`;
export const KUBE_API_CA_FILE = `${KUBE_API_DIR}/ca.crt`;

/** Downward-API variable with the pod's name (unknown to the webhook for generateName pods). */
export const POD_NAME_ENV = "DSO_POD_NAME";

export const AGENT_VOLUME_NAMES: readonly string[] = [
  SECRETS_VOLUME,
  STATE_VOLUME,
  TOKEN_VOLUME,
  AZURE_TOKEN_VOLUME,
  VAULT_CA_VOLUME,
  APPROLE_VOLUME,
  KUBE_API_VOLUME,
];

/** Directories the agent containers mount their own volumes under; the mount path must avoid them. */
export const AGENT_RESERVED_DIRS: readonly string[] = ["/var/run/dso", "/var/run/secrets/dso.io"];
