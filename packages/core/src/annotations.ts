/**
 * The annotation contract (docs/annotations.md): every `dso.io/*` key as a named constant with its
 * parser and explicit default. Parsers here look at one value alone; checks that need the pod
 * (container names, mount-path clashes) or other settings live in injection-spec.ts.
 */
import {
  ON_CHANGE_SIGNALS,
  type AzureAuthMethod,
  type OnChangeAction,
  type ProviderName,
  type VaultAuthMethod,
} from "./agent-config.js";
import { parseRefresh } from "./durations.js";
import { didYouMean } from "./nearest-name.js";
import { parseFailure, parsedValue, type Parsed } from "./parsed.js";
import type { SettingName } from "./policy-types.js";
import type { Problem } from "./problems.js";
import { checkVaultPath, parseAzureVault } from "./references.js";

export const ANNOTATION_PREFIX = "dso.io/";

/** `"true"` injects the pod; any other value or absence leaves it alone. */
export const INJECT_ANNOTATION = "dso.io/inject";
/** Set by the webhook on injected pods; its presence with `"true"` makes re-review a no-op. */
export const INJECTED_ANNOTATION = "dso.io/injected";
/** `dso.io/secret-<file>`: a secret reference written to `<mount-path>/<file>`. */
export const SECRET_ANNOTATION_PREFIX = "dso.io/secret-";
/** `dso.io/template-<file>`: a Mustache template rendering `<file>` from its secret. */
export const TEMPLATE_ANNOTATION_PREFIX = "dso.io/template-";

export const PROVIDER_ANNOTATION = "dso.io/provider";
export const CONTAINERS_ANNOTATION = "dso.io/containers";
export const MOUNT_PATH_ANNOTATION = "dso.io/mount-path";
export const REFRESH_ANNOTATION = "dso.io/refresh";
export const MODE_ANNOTATION = "dso.io/mode";
export const ON_CHANGE_ANNOTATION = "dso.io/on-change";
export const VAULT_ADDRESS_ANNOTATION = "dso.io/vault-address";
export const VAULT_ROLE_ANNOTATION = "dso.io/vault-role";
export const VAULT_AUTH_PATH_ANNOTATION = "dso.io/vault-auth-path";
export const VAULT_AUTH_METHOD_ANNOTATION = "dso.io/vault-auth-method";
export const VAULT_AUDIENCE_ANNOTATION = "dso.io/vault-audience";
export const VAULT_NAMESPACE_ANNOTATION = "dso.io/vault-namespace";
export const VAULT_CA_CONFIGMAP_ANNOTATION = "dso.io/vault-ca-configmap";
export const AZURE_VAULT_ANNOTATION = "dso.io/azure-vault";
export const AZURE_TENANT_ID_ANNOTATION = "dso.io/azure-tenant-id";
export const AZURE_CLIENT_ID_ANNOTATION = "dso.io/azure-client-id";
export const AZURE_AUTH_ANNOTATION = "dso.io/azure-auth";
export const AGENT_CPU_ANNOTATION = "dso.io/agent-cpu";
export const AGENT_MEMORY_ANNOTATION = "dso.io/agent-memory";

/** Service-account annotations of Azure workload identity, read as fallbacks when the policy allows. */
export const SA_CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id";
export const SA_TENANT_ID_ANNOTATION = "azure.workload.identity/tenant-id";

export type InjectionMode = "init-and-sidecar" | "init-only" | "sidecar-only";
export const INJECTION_MODES: readonly InjectionMode[] = [
  "init-and-sidecar",
  "init-only",
  "sidecar-only",
];

/** One setting: its annotation, its built-in default (used when neither pod nor policy sets it) and its parser. */
export interface SettingDefinition<T> {
  annotation: string;
  default: string | undefined;
  parse: (raw: string) => Parsed<T>;
}

function setting<T>(
  annotation: string,
  defaultValue: string | undefined,
  parse: (raw: string) => Parsed<T>,
): SettingDefinition<T> {
  return { annotation, default: defaultValue, parse };
}

function oneOf<T extends string>(values: readonly T[]): (raw: string) => Parsed<T> {
  return (raw) => {
    const value = raw.trim();
    return (values as readonly string[]).includes(value)
      ? parsedValue(value as T)
      : parseFailure(`"${raw}" must be one of ${values.join(", ")}${didYouMean(value, values)}`);
  };
}

function nonBlank(what: string): (raw: string) => Parsed<string> {
  return (raw) => {
    const value = raw.trim();
    if (value === "") return parseFailure(`is empty: give ${what}`);
    if (/\s/.test(value)) return parseFailure(`"${raw}" must not contain whitespace`);
    return parsedValue(value);
  };
}

/** The agent's list (agent-config.ts), so the webhook never accepts a signal the agent refuses. */
const SIGNALS: readonly string[] = ON_CHANGE_SIGNALS;

/** Absolute, normalized (no `.`, doubled or trailing `/`), not `/`, no `..`. */
export function parseMountPath(raw: string): Parsed<string> {
  const value = raw.trim();
  if (!value.startsWith("/")) {
    return parseFailure(`"${raw}" must be an absolute path like /var/run/secrets/dso`);
  }
  const segments = value.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) return parseFailure(`"${raw}" must not contain ".."`);
  if (segments.length === 0) return parseFailure(`"${raw}" cannot be the root directory`);
  if (value.includes(":")) return parseFailure(`"${raw}" must not contain ":"`);
  return parsedValue(`/${segments.join("/")}`);
}

/** `http://127.0.0.1:<port>/<path>` (or localhost), `signal:<SIGNAL>:<container>`, `rollout`. */
export function parseOnChange(raw: string): Parsed<OnChangeAction> {
  const value = raw.trim();
  if (value === "rollout") return parsedValue({ kind: "rollout" });
  if (value.startsWith("signal:")) {
    const [, signalText = "", container = "", ...rest] = value.split(":");
    const signal = signalText.toUpperCase().startsWith("SIG")
      ? signalText.toUpperCase()
      : `SIG${signalText.toUpperCase()}`;
    if (rest.length > 0 || container === "") {
      return parseFailure(
        `"${raw}" must look like signal:<SIGNAL>:<container>, e.g. signal:SIGHUP:app`,
      );
    }
    if (!SIGNALS.includes(signal)) {
      return parseFailure(
        `"${signalText}" is not a signal DSO can send: use one of ${SIGNALS.join(", ")}${didYouMean(signal, SIGNALS)}`,
      );
    }
    return parsedValue({ kind: "signal", signal, container });
  }
  if (/^https?:\/\//i.test(value)) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return parseFailure(`"${raw}" is not a valid URL`);
    }
    const local = ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);
    if (url.protocol !== "http:" || !local || url.username !== "" || url.password !== "") {
      return parseFailure(
        `"${raw}" must be a URL on the pod itself, like http://127.0.0.1:8080/-/reload (http, host 127.0.0.1 or localhost)`,
      );
    }
    return parsedValue({ kind: "http", url: url.href });
  }
  return parseFailure(
    `"${raw}" must be http://127.0.0.1:<port>/<path>, signal:<SIGNAL>:<container> or rollout`,
  );
}

/** Comma-separated container names, spaces allowed around them. */
export function parseContainerList(raw: string): Parsed<string[]> {
  const names = raw
    .split(",")
    .map((n) => n.trim())
    .filter((n) => n !== "");
  if (names.length === 0) return parseFailure("is empty: list container names separated by commas");
  return parsedValue([...new Set(names)]);
}

/** One or more http(s) Vault addresses, comma-separated (HA: the agent tries them in order). */
export function parseVaultAddresses(raw: string): Parsed<string[]> {
  const parts = raw
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
  if (parts.length === 0)
    return parseFailure("is empty: give an address like https://vault.example.com:8200");
  const addresses: string[] = [];
  for (const part of parts) {
    let url: URL;
    try {
      url = new URL(part);
    } catch {
      return parseFailure(`"${part}" is not a URL: write e.g. https://vault.example.com:8200`);
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      return parseFailure(`"${part}" must be an http or https URL`);
    }
    if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
      return parseFailure(`"${part}" must not carry credentials, a query or a fragment`);
    }
    addresses.push(normalizeVaultAddress(url));
  }
  return parsedValue(addresses);
}

/** The address without a trailing `/`, so comparisons with the policy are exact. */
export function normalizeVaultAddress(url: URL): string {
  return url.href.replace(/\/+$/, "");
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUANTITY = /^[+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+|E[-+]?\d+|[numkMGTPE]|[KMGTPE]i)?$/;
const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const TENANT_DOMAIN = /^[a-zA-Z0-9][a-zA-Z0-9.-]*\.[a-zA-Z]{2,}$/;

function parseQuantity(raw: string): Parsed<string> {
  const value = raw.trim();
  return QUANTITY.test(value) && !/^[+]?0*(\.0*)?([a-zA-Z].*)?$/.test(value)
    ? parsedValue(value)
    : parseFailure(`"${raw}" is not a positive Kubernetes quantity like 50m, 0.1, 64Mi`);
}

function parseConfigMapName(raw: string): Parsed<string> {
  const value = raw.trim();
  return DNS_SUBDOMAIN.test(value) && value.length <= 253
    ? parsedValue(value)
    : parseFailure(`"${raw}" is not a ConfigMap name (lower-case letters, digits, "-" and ".")`);
}

function parseGuid(raw: string): Parsed<string> {
  const value = raw.trim();
  return GUID.test(value)
    ? parsedValue(value.toLowerCase())
    : parseFailure(`"${raw}" is not a GUID like 00000000-0000-0000-0000-000000000000`);
}

function parseTenant(raw: string): Parsed<string> {
  const value = raw.trim();
  if (GUID.test(value)) return parsedValue(value.toLowerCase());
  return TENANT_DOMAIN.test(value)
    ? parsedValue(value)
    : parseFailure(
        `"${raw}" is not a tenant ID (a GUID) or a tenant domain like contoso.onmicrosoft.com`,
      );
}

function parseAuthPath(raw: string): Parsed<string> {
  const value = raw.trim().replace(/^\/+|\/+$/g, "");
  const checked = checkVaultPath(value);
  return checked.ok ? checked : parseFailure(checked.message.replace("Vault path", "auth path"));
}

export const PROVIDERS: readonly ProviderName[] = ["vault", "azure"];
const VAULT_AUTH_METHODS: readonly VaultAuthMethod[] = ["kubernetes", "jwt", "approle"];
const AZURE_AUTH_METHODS: readonly AzureAuthMethod[] = [
  "workload-identity",
  "managed-identity",
  "default",
];

/** Every setting, keyed by its name in the policy (`SettingName`). */
export const SETTINGS = {
  /** `vault` | `azure`: the provider of references that name none. No default. */
  provider: setting(PROVIDER_ANNOTATION, undefined, oneOf(PROVIDERS)),
  /** Directory of the secret files in the selected containers. */
  "mount-path": setting(MOUNT_PATH_ANNOTATION, "/var/run/secrets/dso", parseMountPath),
  /** How often the sidecar re-reads static secrets, as a duration (min 5s). */
  refresh: setting(REFRESH_ANNOTATION, "5m", parseRefresh),
  /** Which agent containers are added. */
  mode: setting(MODE_ANNOTATION, "init-and-sidecar", oneOf(INJECTION_MODES)),
  /** What the sidecar does after files changed. No default (nothing). */
  "on-change": setting(ON_CHANGE_ANNOTATION, undefined, parseOnChange),
  /** Containers that mount the files. Default: every regular container. */
  containers: setting(CONTAINERS_ANNOTATION, undefined, parseContainerList),
  /** Vault address(es). */
  "vault-address": setting(VAULT_ADDRESS_ANNOTATION, undefined, parseVaultAddresses),
  /** Vault role (kubernetes/jwt auth), or the AppRole credentials Secret (approle). */
  "vault-role": setting(VAULT_ROLE_ANNOTATION, undefined, nonBlank("a Vault role name")),
  "vault-auth-path": setting(VAULT_AUTH_PATH_ANNOTATION, "auth/kubernetes", parseAuthPath),
  "vault-auth-method": setting(
    VAULT_AUTH_METHOD_ANNOTATION,
    "kubernetes",
    oneOf(VAULT_AUTH_METHODS),
  ),
  /** Audience of the projected token presented to Vault; must match the Vault role's `audience`. */
  "vault-audience": setting(VAULT_AUDIENCE_ANNOTATION, "vault", nonBlank("a token audience")),
  "vault-namespace": setting(VAULT_NAMESPACE_ANNOTATION, undefined, nonBlank("a Vault namespace")),
  /** ConfigMap with key `ca.crt` holding the CA bundle that signed Vault's certificate. */
  "vault-ca-configmap": setting(VAULT_CA_CONFIGMAP_ANNOTATION, undefined, parseConfigMapName),
  /** Default Key Vault: a name or an https URL. */
  "azure-vault": setting(AZURE_VAULT_ANNOTATION, undefined, parseAzureVault),
  "azure-tenant-id": setting(AZURE_TENANT_ID_ANNOTATION, undefined, parseTenant),
  "azure-client-id": setting(AZURE_CLIENT_ID_ANNOTATION, undefined, parseGuid),
  "azure-auth": setting(AZURE_AUTH_ANNOTATION, "workload-identity", oneOf(AZURE_AUTH_METHODS)),
  /** CPU request of each agent container (no CPU limit). */
  "agent-cpu": setting(AGENT_CPU_ANNOTATION, "25m", parseQuantity),
  /** Memory request and limit of each agent container (default request 32Mi, limit 64Mi). */
  "agent-memory": setting(AGENT_MEMORY_ANNOTATION, undefined, parseQuantity),
} satisfies Record<SettingName, SettingDefinition<unknown>>;

export type Settings = typeof SETTINGS;
/** The parsed type of a setting, e.g. `SettingValue<"refresh">` is `number` (seconds). */
export type SettingValue<N extends SettingName> =
  Settings[N] extends SettingDefinition<infer T> ? T : never;

/** Every fixed (non-file) annotation key DSO knows. */
export const KNOWN_ANNOTATIONS: readonly string[] = [
  INJECT_ANNOTATION,
  INJECTED_ANNOTATION,
  ...Object.values(SETTINGS).map((s) => s.annotation),
];

/** The setting an annotation key sets, if any. */
export function settingForAnnotation(key: string): SettingName | undefined {
  for (const [name, definition] of Object.entries(SETTINGS)) {
    if (definition.annotation === key) return name as SettingName;
  }
  return undefined;
}

/**
 * Problems for `dso.io/*` keys that are not part of the contract, each with the nearest known key:
 * `dso.io/secert-db` → `dso.io/secret-db`.
 */
export function unknownAnnotationProblems(
  annotations: Readonly<Record<string, string>>,
): Problem[] {
  const problems: Problem[] = [];
  for (const key of Object.keys(annotations)) {
    if (!key.startsWith(ANNOTATION_PREFIX)) continue;
    if (KNOWN_ANNOTATIONS.includes(key)) continue;
    if (key.startsWith(SECRET_ANNOTATION_PREFIX) || key.startsWith(TEMPLATE_ANNOTATION_PREFIX))
      continue;
    problems.push({
      field: key,
      message: `is not a DSO annotation${didYouMean(key, annotationCandidates(key))}`,
    });
  }
  return problems;
}

/** Known keys plus, for a key that looks like `<word>-<file>`, the secret/template keys for that file. */
function annotationCandidates(key: string): string[] {
  const name = key.slice(ANNOTATION_PREFIX.length);
  const candidates = [...KNOWN_ANNOTATIONS];
  const dash = name.indexOf("-");
  if (dash > 0) {
    const file = name.slice(dash + 1);
    candidates.push(SECRET_ANNOTATION_PREFIX + file, TEMPLATE_ANNOTATION_PREFIX + file);
  }
  return candidates;
}

const FILE_NAME = /^[A-Za-z0-9._-]+$/;

/** A plain file name under the mount path: letters, digits, `.`, `_`, `-`; not `.` or `..`. */
/** 63 (the limit of an annotation key's name part) minus "template-", the longer prefix. */
export const MAX_FILE_NAME_LENGTH = 63 - "template-".length;

export function checkFileName(file: string): Parsed<string> {
  if (file === "")
    return parseFailure(
      "names no file: write dso.io/secret-<file>, e.g. dso.io/secret-db-password",
    );
  if (!FILE_NAME.test(file) || file === "." || file === "..") {
    return parseFailure(
      `"${file}" is not a plain file name: use letters, digits, ".", "_" and "-" (not "." or "..")`,
    );
  }
  // Kubernetes caps an annotation key's name part at 63 characters; without this check the API
  // server would refuse the pod after us with a generic message that does not mention DSO.
  if (file.length > MAX_FILE_NAME_LENGTH) {
    return parseFailure(
      `"${file}" is ${file.length} characters long: Kubernetes limits an annotation name to 63 characters and "template-<file>" must fit, so a file name may have at most ${MAX_FILE_NAME_LENGTH}`,
    );
  }
  return parsedValue(file);
}
