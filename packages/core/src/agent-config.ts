/**
 * The agent's configuration schema, version 1.
 *
 * The webhook resolves a pod's annotations and the cluster policy into one of these and hands it
 * to the agent containers as JSON in the `DSO_AGENT_CONFIG` environment variable, so the agent
 * never needs to call the Kubernetes API to learn what to do. Outside Kubernetes (`dso-agent
 * render`), the same document is read from a file (JSON or YAML).
 *
 * It carries references to secrets, never secret values: it is safe in a pod spec and in etcd.
 * Documented for users in docs/agent-config.md; keep the two in step.
 */

import type { Problem } from "./problems.js";

export const AGENT_CONFIG_API_VERSION = "dso.io/v1";
export const AGENT_CONFIG_KIND = "AgentConfig";
/** Name of the environment variable the webhook sets on agent containers. */
export const AGENT_CONFIG_ENV = "DSO_AGENT_CONFIG";

export type ProviderName = "vault" | "azure";

/** A reference to one secret in Vault/OpenBao. */
export interface VaultSecretRef {
  provider: "vault";
  /** API path without the `v1/` prefix, as written by the user: `secret/data/app/db`, `secret/app/db`, `database/creds/app`. */
  path: string;
  /** One key of the data object; absent means the whole data object, written as JSON. */
  key?: string;
}

/** A reference to one secret or certificate in Azure Key Vault. */
export interface AzureSecretRef {
  provider: "azure";
  /** `secret` reads a secret; `certificate` reads the certificate's backing secret and renders PEM (key and chain). */
  kind: "secret" | "certificate";
  /** `https://<vault>.vault.azure.net`; absent means the configuration's default vault. */
  vaultUrl?: string;
  name: string;
  /** A pinned version is fetched once and never re-fetched; absent means the latest version. */
  version?: string;
}

export type SecretRef = VaultSecretRef | AzureSecretRef;

export interface SecretSpec {
  /** Plain file name under `mountPath`. */
  file: string;
  ref: SecretRef;
  /** Mustache template rendered with the fetched value; absent means the value is written as is. */
  template?: string;
}

export type OnChangeAction =
  | { kind: "http"; url: string }
  | { kind: "signal"; signal: string; container: string }
  | { kind: "rollout" };

export type VaultAuthMethod = "kubernetes" | "jwt" | "approle";

export interface VaultConfig {
  /** One or more addresses (HA); the agent fails over in order. */
  addresses: string[];
  authMethod: VaultAuthMethod;
  /** Mount path of the auth method, e.g. `auth/kubernetes`. */
  authPath: string;
  /** Role for kubernetes/jwt auth. */
  role?: string;
  /** File holding the JWT presented to Vault (the projected service-account token for kubernetes/jwt). */
  tokenFile?: string;
  /** AppRole: files holding role_id and secret_id. */
  roleIdFile?: string;
  secretIdFile?: string;
  namespace?: string;
  /** PEM CA bundle file used to verify Vault's TLS certificate. */
  caFile?: string;
  /** Revoke dynamic-secret leases (and the token) when the sidecar shuts down. */
  revokeOnShutdown?: boolean;
}

export type AzureAuthMethod = "workload-identity" | "managed-identity" | "default";

export interface AzureConfig {
  /** Default vault for references that name no vault: `https://<vault>.vault.azure.net`. */
  vaultUrl?: string;
  auth: AzureAuthMethod;
  tenantId?: string;
  clientId?: string;
  /** Workload identity: the federated token file (projected token with audience api://AzureADTokenExchange). */
  tokenFile?: string;
  /** Microsoft Entra authority host; default https://login.microsoftonline.com. */
  authorityHost?: string;
  /** Skip Entra instance discovery (sovereign clouds, test issuers). */
  disableInstanceDiscovery?: boolean;
  /** Key Vault API version to request (emulators may lag the SDK's default). */
  serviceVersion?: string;
  /** Skip the check that the auth challenge's resource matches the vault host (emulators on localhost). */
  disableChallengeResourceVerification?: boolean;
}

export interface AgentConfig {
  apiVersion: typeof AGENT_CONFIG_API_VERSION;
  kind: typeof AGENT_CONFIG_KIND;
  /** Directory the secret files are written to (the in-memory volume). */
  mountPath: string;
  /** Private directory for the init→sidecar hand-off (token, leases, versions, hashes). */
  statePath?: string;
  /** Seconds between re-reads of static secrets. */
  refreshSeconds: number;
  /** File mode of written secret files, e.g. 0o440. */
  fileMode: number;
  secrets: SecretSpec[];
  onChange?: OnChangeAction;
  vault?: VaultConfig;
  azure?: AzureConfig;
  /** Where the pod runs; used in log lines and by the `rollout` action. */
  pod?: { namespace?: string; name?: string; serviceAccount?: string };
  /** Localhost port of the sidecar's health and metrics endpoint. */
  telemetryPort?: number;
}

export type ParseAgentConfigResult =
  { ok: true; config: AgentConfig } | { ok: false; problems: Problem[] };

/** Signals the `signal` on-change action may send; the ones applications conventionally reload on. */
export const ON_CHANGE_SIGNALS = ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGINT", "SIGQUIT"];

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Collects problems while walking the input; every check records its path so users fix all in one pass. */
class Checker {
  readonly problems: Problem[] = [];

  add(field: string, message: string): void {
    this.problems.push({ field, message });
  }

  object(v: unknown, field: string, allowed: readonly string[]): Obj | undefined {
    if (!isObject(v)) {
      this.add(field, `must be an object, got ${describe(v)}`);
      return undefined;
    }
    for (const key of Object.keys(v)) {
      if (!allowed.includes(key)) {
        this.add(join(field, key), `unknown field; allowed fields are ${allowed.join(", ")}`);
      }
    }
    return v;
  }

  string(o: Obj, key: string, field: string, required: boolean): string | undefined {
    const v = o[key];
    const path = join(field, key);
    if (v === undefined) {
      if (required) this.add(path, "is required");
      return undefined;
    }
    if (typeof v !== "string") {
      this.add(path, `must be a string, got ${describe(v)}`);
      return undefined;
    }
    if (v.trim() === "") {
      this.add(path, "must not be empty");
      return undefined;
    }
    if (v.includes("\0")) {
      this.add(path, "must not contain NUL characters");
      return undefined;
    }
    return v;
  }

  integer(
    o: Obj,
    key: string,
    field: string,
    min: number,
    max: number,
    required: boolean,
  ): number | undefined {
    const v = o[key];
    const path = join(field, key);
    if (v === undefined) {
      if (required) this.add(path, "is required");
      return undefined;
    }
    if (typeof v !== "number" || !Number.isInteger(v)) {
      this.add(path, `must be an integer, got ${describe(v)}`);
      return undefined;
    }
    if (v < min || v > max) {
      this.add(path, `must be between ${min} and ${max}, got ${v}`);
      return undefined;
    }
    return v;
  }

  boolean(o: Obj, key: string, field: string): boolean | undefined {
    const v = o[key];
    if (v === undefined) return undefined;
    if (typeof v !== "boolean") {
      this.add(join(field, key), `must be true or false, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  oneOf<T extends string>(
    o: Obj,
    key: string,
    field: string,
    values: readonly T[],
    required: boolean,
  ): T | undefined {
    const v = o[key];
    const path = join(field, key);
    if (v === undefined) {
      if (required) this.add(path, `is required; one of ${values.join(", ")}`);
      return undefined;
    }
    if (typeof v !== "string" || !(values as readonly string[]).includes(v)) {
      this.add(path, `must be one of ${values.join(", ")}, got ${describe(v)}`);
      return undefined;
    }
    return v as T;
  }

  url(o: Obj, key: string, field: string, schemes: readonly string[], required: boolean) {
    const s = this.string(o, key, field, required);
    if (s === undefined) return undefined;
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      this.add(join(field, key), `must be an absolute URL, got ${JSON.stringify(s)}`);
      return undefined;
    }
    if (!schemes.includes(u.protocol.replace(/:$/, ""))) {
      this.add(join(field, key), `must use ${schemes.join(" or ")}, got ${JSON.stringify(s)}`);
      return undefined;
    }
    return s;
  }
}

function join(field: string, key: string): string {
  return field === "" ? key : `${field}.${key}`;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string")
    return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)}`;
  if (typeof v === "object") return "an object";
  if (typeof v === "number" || typeof v === "boolean") return `${typeof v} ${String(v)}`;
  return typeof v;
}

const TOP_KEYS = [
  "apiVersion",
  "kind",
  "mountPath",
  "statePath",
  "refreshSeconds",
  "fileMode",
  "secrets",
  "onChange",
  "vault",
  "azure",
  "pod",
  "telemetryPort",
] as const;

const AZURE_NAME = /^[0-9A-Za-z-]{1,127}$/;
const AZURE_VERSION = /^[0-9A-Za-z]{1,64}$/;

/**
 * Validates an untrusted document (parsed JSON or YAML) against AgentConfig v1.
 * Pure: reports every problem with its path instead of stopping at the first.
 */
export function parseAgentConfig(input: unknown): ParseAgentConfigResult {
  const c = new Checker();
  const o = c.object(input, "", TOP_KEYS);
  if (o === undefined) return { ok: false, problems: c.problems };

  if (o.apiVersion !== AGENT_CONFIG_API_VERSION) {
    c.add(
      "apiVersion",
      o.apiVersion === undefined
        ? `is required; this agent reads ${AGENT_CONFIG_API_VERSION}`
        : `unsupported version ${describe(o.apiVersion)}; this agent reads ${AGENT_CONFIG_API_VERSION}`,
    );
  }
  if (o.kind !== AGENT_CONFIG_KIND) {
    c.add("kind", `must be ${AGENT_CONFIG_KIND}, got ${describe(o.kind)}`);
  }
  const mountPath = c.string(o, "mountPath", "", true);
  const statePath = c.string(o, "statePath", "", false);
  const refreshSeconds = c.integer(o, "refreshSeconds", "", 1, 7 * 24 * 3600, true);
  const fileMode = c.integer(o, "fileMode", "", 0, 0o777, true);
  if (fileMode !== undefined && (fileMode & 0o007) !== 0) {
    c.add(
      "fileMode",
      `must not grant access to other users (got 0o${fileMode.toString(8)}); use e.g. 0o440`,
    );
  }
  if (fileMode !== undefined && (fileMode & 0o400) === 0) {
    c.add("fileMode", `must let the owner read the file (got 0o${fileMode.toString(8)})`);
  }
  const telemetryPort = c.integer(o, "telemetryPort", "", 1, 65535, false);

  const vault = o.vault === undefined ? undefined : parseVault(c, o.vault);
  const azure = o.azure === undefined ? undefined : parseAzure(c, o.azure);
  const pod = o.pod === undefined ? undefined : parsePod(c, o.pod);
  const onChange = o.onChange === undefined ? undefined : parseOnChange(c, o.onChange);

  const secrets: SecretSpec[] = [];
  if (o.secrets === undefined) {
    c.add("secrets", "is required; list at least one secret");
  } else if (!Array.isArray(o.secrets)) {
    c.add("secrets", `must be a list, got ${describe(o.secrets)}`);
  } else if (o.secrets.length === 0) {
    c.add("secrets", "must list at least one secret");
  } else {
    const seen = new Map<string, number>();
    o.secrets.forEach((s: unknown, i: number) => {
      const spec = parseSecret(c, s, `secrets[${i}]`, {
        hasVault: o.vault !== undefined,
        hasAzure: o.azure !== undefined,
        azureDefaultVault: isObject(o.azure) && o.azure.vaultUrl !== undefined,
      });
      if (spec === undefined) return;
      const previous = seen.get(spec.file);
      if (previous !== undefined) {
        c.add(`secrets[${i}].file`, `"${spec.file}" is already written by secrets[${previous}]`);
      } else {
        seen.set(spec.file, i);
      }
      secrets.push(spec);
    });
  }

  if (c.problems.length > 0 || mountPath === undefined) return { ok: false, problems: c.problems };
  const config: AgentConfig = {
    apiVersion: AGENT_CONFIG_API_VERSION,
    kind: AGENT_CONFIG_KIND,
    mountPath,
    refreshSeconds: refreshSeconds ?? 0,
    fileMode: fileMode ?? 0,
    secrets,
  };
  if (statePath !== undefined) config.statePath = statePath;
  if (onChange !== undefined) config.onChange = onChange;
  if (vault !== undefined) config.vault = vault;
  if (azure !== undefined) config.azure = azure;
  if (pod !== undefined) config.pod = pod;
  if (telemetryPort !== undefined) config.telemetryPort = telemetryPort;
  return { ok: true, config };
}

function parseSecret(
  c: Checker,
  v: unknown,
  field: string,
  sections: { hasVault: boolean; hasAzure: boolean; azureDefaultVault: boolean },
): SecretSpec | undefined {
  const o = c.object(v, field, ["file", "ref", "template"]);
  if (o === undefined) return undefined;
  const before = c.problems.length;
  const file = c.string(o, "file", field, true);
  if (file !== undefined) {
    if (file.includes("/") || file.includes("\\")) {
      c.add(`${field}.file`, `must be a plain file name without directories, got "${file}"`);
    } else if (file === "." || file === ".." || file.startsWith("..")) {
      c.add(`${field}.file`, `must not start with ".." (reserved for the agent's atomic writes)`);
    } else if (file.length > 255) {
      c.add(`${field}.file`, "must be at most 255 characters");
    }
  }
  const template = o.template;
  if (template !== undefined && typeof template !== "string") {
    c.add(`${field}.template`, `must be a string, got ${describe(template)}`);
  }
  let ref: SecretRef | undefined;
  const refField = `${field}.ref`;
  const r = o.ref === undefined ? undefined : c.object(o.ref, refField, REF_KEYS);
  if (o.ref === undefined) c.add(refField, "is required");
  if (r !== undefined) {
    const provider = c.oneOf(r, "provider", refField, ["vault", "azure"] as const, true);
    if (provider === "vault") {
      for (const k of ["kind", "vaultUrl", "name", "version"]) {
        if (k in r) c.add(`${refField}.${k}`, "applies to azure references only");
      }
      if (!sections.hasVault)
        c.add(refField, "refers to Vault but the configuration has no vault section");
      const path = c.string(r, "path", refField, true);
      if (path !== undefined) {
        if (/\s/.test(path)) c.add(`${refField}.path`, "must not contain whitespace");
        else if (path.startsWith("/") || path.endsWith("/")) {
          c.add(`${refField}.path`, `must not start or end with "/", got "${path}"`);
        } else if (path.startsWith("v1/")) {
          c.add(`${refField}.path`, `must not include the "v1/" API prefix, got "${path}"`);
        } else if (path.split("/").some((seg) => seg === ".." || seg === "." || seg === "")) {
          c.add(`${refField}.path`, `must not contain empty, "." or ".." segments`);
        }
      }
      const key = c.string(r, "key", refField, false);
      if (path !== undefined && c.problems.length === before) {
        ref = { provider: "vault", path };
        if (key !== undefined) ref.key = key;
      }
    } else if (provider === "azure") {
      for (const k of ["path", "key"]) {
        if (k in r) c.add(`${refField}.${k}`, "applies to vault references only");
      }
      if (!sections.hasAzure) {
        c.add(refField, "refers to Azure Key Vault but the configuration has no azure section");
      }
      const kind = c.oneOf(r, "kind", refField, ["secret", "certificate"] as const, true);
      const vaultUrl = c.url(r, "vaultUrl", refField, ["https"], false);
      if (sections.hasAzure && r.vaultUrl === undefined && !sections.azureDefaultVault) {
        c.add(`${refField}.vaultUrl`, "is required because azure.vaultUrl sets no default vault");
      }
      const name = c.string(r, "name", refField, true);
      if (name !== undefined && !AZURE_NAME.test(name)) {
        c.add(`${refField}.name`, `must be 1-127 letters, digits or dashes, got "${name}"`);
      }
      const version = c.string(r, "version", refField, false);
      if (version !== undefined && !AZURE_VERSION.test(version)) {
        c.add(`${refField}.version`, `must be letters and digits only, got "${version}"`);
      }
      if (kind !== undefined && name !== undefined && c.problems.length === before) {
        ref = { provider: "azure", kind, name };
        if (vaultUrl !== undefined) ref.vaultUrl = vaultUrl;
        if (version !== undefined) ref.version = version;
      }
    }
  }
  if (c.problems.length !== before || file === undefined || ref === undefined) return undefined;
  const spec: SecretSpec = { file, ref };
  if (typeof template === "string") spec.template = template;
  return spec;
}

const REF_KEYS = ["provider", "path", "key", "kind", "vaultUrl", "name", "version"];

function parseVault(c: Checker, v: unknown): VaultConfig | undefined {
  const f = "vault";
  const o = c.object(v, f, [
    "addresses",
    "authMethod",
    "authPath",
    "role",
    "tokenFile",
    "roleIdFile",
    "secretIdFile",
    "namespace",
    "caFile",
    "revokeOnShutdown",
  ]);
  if (o === undefined) return undefined;
  const before = c.problems.length;
  const addresses: string[] = [];
  if (o.addresses === undefined) c.add(`${f}.addresses`, "is required; list at least one address");
  else if (!Array.isArray(o.addresses) || o.addresses.length === 0) {
    c.add(`${f}.addresses`, "must be a non-empty list of http(s) URLs");
  } else {
    o.addresses.forEach((a: unknown, i: number) => {
      const u = c.url({ a }, "a", "", ["http", "https"], true);
      if (u === undefined) {
        // Re-home the problem recorded under the placeholder key onto the real path.
        const last = c.problems[c.problems.length - 1];
        if (last !== undefined && last.field === "a") last.field = `${f}.addresses[${i}]`;
      } else addresses.push(u.replace(/\/+$/, ""));
    });
  }
  const authMethod = c.oneOf(o, "authMethod", f, ["kubernetes", "jwt", "approle"] as const, true);
  const authPath = c.string(o, "authPath", f, true);
  if (authPath !== undefined && (authPath.startsWith("/") || authPath.endsWith("/"))) {
    c.add(`${f}.authPath`, `must not start or end with "/", e.g. auth/kubernetes`);
  }
  const role = c.string(o, "role", f, false);
  const tokenFile = c.string(o, "tokenFile", f, false);
  const roleIdFile = c.string(o, "roleIdFile", f, false);
  const secretIdFile = c.string(o, "secretIdFile", f, false);
  if (authMethod === "kubernetes" || authMethod === "jwt") {
    if (o.role === undefined) c.add(`${f}.role`, `is required for ${authMethod} auth`);
    if (o.tokenFile === undefined) c.add(`${f}.tokenFile`, `is required for ${authMethod} auth`);
  }
  if (authMethod === "approle") {
    if (o.roleIdFile === undefined) c.add(`${f}.roleIdFile`, "is required for approle auth");
    if (o.secretIdFile === undefined) c.add(`${f}.secretIdFile`, "is required for approle auth");
  }
  const namespace = c.string(o, "namespace", f, false);
  const caFile = c.string(o, "caFile", f, false);
  const revokeOnShutdown = c.boolean(o, "revokeOnShutdown", f);
  if (c.problems.length !== before || authMethod === undefined || authPath === undefined) {
    return undefined;
  }
  const out: VaultConfig = { addresses, authMethod, authPath };
  if (role !== undefined) out.role = role;
  if (tokenFile !== undefined) out.tokenFile = tokenFile;
  if (roleIdFile !== undefined) out.roleIdFile = roleIdFile;
  if (secretIdFile !== undefined) out.secretIdFile = secretIdFile;
  if (namespace !== undefined) out.namespace = namespace;
  if (caFile !== undefined) out.caFile = caFile;
  if (revokeOnShutdown !== undefined) out.revokeOnShutdown = revokeOnShutdown;
  return out;
}

function parseAzure(c: Checker, v: unknown): AzureConfig | undefined {
  const f = "azure";
  const o = c.object(v, f, [
    "vaultUrl",
    "auth",
    "tenantId",
    "clientId",
    "tokenFile",
    "authorityHost",
    "disableInstanceDiscovery",
    "serviceVersion",
    "disableChallengeResourceVerification",
  ]);
  if (o === undefined) return undefined;
  const before = c.problems.length;
  const vaultUrl = c.url(o, "vaultUrl", f, ["https"], false);
  const auth = c.oneOf(
    o,
    "auth",
    f,
    ["workload-identity", "managed-identity", "default"] as const,
    true,
  );
  const tenantId = c.string(o, "tenantId", f, false);
  const clientId = c.string(o, "clientId", f, false);
  const tokenFile = c.string(o, "tokenFile", f, false);
  if (auth === "workload-identity") {
    for (const k of ["tenantId", "clientId", "tokenFile"]) {
      if (o[k] === undefined) c.add(`${f}.${k}`, "is required for workload-identity auth");
    }
  }
  const authorityHost = c.url(o, "authorityHost", f, ["https"], false);
  const disableInstanceDiscovery = c.boolean(o, "disableInstanceDiscovery", f);
  const serviceVersion = c.string(o, "serviceVersion", f, false);
  const disableChallengeResourceVerification = c.boolean(
    o,
    "disableChallengeResourceVerification",
    f,
  );
  if (c.problems.length !== before || auth === undefined) return undefined;
  const out: AzureConfig = { auth };
  if (vaultUrl !== undefined) out.vaultUrl = vaultUrl.replace(/\/+$/, "");
  if (tenantId !== undefined) out.tenantId = tenantId;
  if (clientId !== undefined) out.clientId = clientId;
  if (tokenFile !== undefined) out.tokenFile = tokenFile;
  if (authorityHost !== undefined) out.authorityHost = authorityHost;
  if (disableInstanceDiscovery !== undefined) {
    out.disableInstanceDiscovery = disableInstanceDiscovery;
  }
  if (serviceVersion !== undefined) out.serviceVersion = serviceVersion;
  if (disableChallengeResourceVerification !== undefined) {
    out.disableChallengeResourceVerification = disableChallengeResourceVerification;
  }
  return out;
}

function parsePod(c: Checker, v: unknown): AgentConfig["pod"] {
  const o = c.object(v, "pod", ["namespace", "name", "serviceAccount"]);
  if (o === undefined) return undefined;
  const out: NonNullable<AgentConfig["pod"]> = {};
  for (const k of ["namespace", "name", "serviceAccount"] as const) {
    const s = c.string(o, k, "pod", false);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

function parseOnChange(c: Checker, v: unknown): OnChangeAction | undefined {
  const f = "onChange";
  if (!isObject(v)) {
    c.add(f, `must be an object, got ${describe(v)}`);
    return undefined;
  }
  const kind = c.oneOf(v, "kind", f, ["http", "signal", "rollout"] as const, true);
  if (kind === "http") {
    c.object(v, f, ["kind", "url"]);
    const url = c.url(v, "url", f, ["http", "https"], true);
    if (url === undefined) return undefined;
    const host = new URL(url).hostname;
    if (!["localhost", "127.0.0.1", "[::1]"].includes(host)) {
      c.add(`${f}.url`, `must point at localhost (the pod itself), got host "${host}"`);
      return undefined;
    }
    return { kind, url };
  }
  if (kind === "signal") {
    c.object(v, f, ["kind", "signal", "container"]);
    const signal = c.oneOf(v, "signal", f, ON_CHANGE_SIGNALS, true);
    const container = c.string(v, "container", f, true);
    if (signal === undefined || container === undefined) return undefined;
    return { kind, signal, container };
  }
  if (kind === "rollout") {
    c.object(v, f, ["kind"]);
    return { kind };
  }
  c.object(v, f, ["kind", "url", "signal", "container"]);
  return undefined;
}
