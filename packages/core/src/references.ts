/**
 * The secret-reference grammar: the value of a `dso.io/secret-<file>` annotation (docs/annotations.md).
 *
 *   vault:<path>[#<key>]             Vault/OpenBao, e.g. `secret/data/app/db#password`
 *   azure:<name>[/<version>]         Key Vault secret on the pod's default vault
 *   azure:cert/<name>[/<version>]    Key Vault certificate (rendered as PEM)
 *   https://<host>/secrets/<name>[/<version>]        Key Vault secret URI (any https host)
 *   https://<host>/certificates/<name>[/<version>]   Key Vault certificate URI
 *   @Microsoft.KeyVault(VaultName=…;SecretName=…[;SecretVersion=…])   App Service syntax
 *   @Microsoft.KeyVault(SecretUri=…)
 *   dso://<ref>                      the pod's default provider, spelled out
 *   <ref>                            the pod's default provider
 *
 * URIs and App Service references name their provider themselves; everything else needs a prefix
 * or a default provider (`dso.io/provider` or the policy), otherwise it is a problem.
 */
import type { AzureSecretRef, ProviderName, SecretRef, VaultSecretRef } from "./agent-config.js";
import { parseFailure, parsedValue, type Parsed } from "./parsed.js";
import type { Problem } from "./problems.js";

export interface ReferenceContext {
  /** The annotation being parsed, named by every problem. */
  field: string;
  /** The pod's default provider (`dso.io/provider` or the policy default). */
  defaultProvider?: ProviderName | undefined;
}

export type ParsedReference = { ok: true; ref: SecretRef } | { ok: false; problem: Problem };

const SECRET_NAME = /^[0-9A-Za-z-]{1,127}$/;
const VERSION = /^[0-9A-Fa-f]{32}$/;
const VAULT_NAME = /^[A-Za-z](?:[A-Za-z0-9-]{1,22})[A-Za-z0-9]$/;
const APP_SERVICE = /^@Microsoft\.KeyVault\((.*)\)$/is;

/** Parses one secret reference; `ctx.field` names the annotation in the problem. */
export function parseSecretRef(text: string, ctx: ReferenceContext): ParsedReference {
  const parsed = parseReference(text.trim(), ctx.defaultProvider);
  return parsed.ok
    ? { ok: true, ref: parsed.value }
    : { ok: false, problem: { field: ctx.field, message: parsed.message } };
}

function parseReference(
  text: string,
  defaultProvider: ProviderName | undefined,
): Parsed<SecretRef> {
  if (text === "") {
    return parseFailure(
      "is empty: write a Vault path like secret/data/app/db#password or a Key Vault secret name",
    );
  }
  if (text.startsWith("dso://")) {
    if (defaultProvider === undefined) {
      return parseFailure(
        `"${text}" uses dso://, which means the pod's default provider, but none is set: add dso.io/provider or write vault: or azure: instead`,
      );
    }
    return parseForProvider(text.slice("dso://".length), defaultProvider);
  }
  if (text.startsWith("vault:")) return parseVaultReference(text.slice("vault:".length));
  if (text.startsWith("azure:")) return parseAzureReference(text.slice("azure:".length));
  if (APP_SERVICE.test(text) || /^https?:\/\//i.test(text)) return parseAzureReference(text);
  if (defaultProvider === undefined) {
    return parseFailure(
      `cannot tell which provider "${text}" is for: prefix it with vault: or azure:, or set dso.io/provider`,
    );
  }
  return parseForProvider(text, defaultProvider);
}

function parseForProvider(text: string, provider: ProviderName): Parsed<SecretRef> {
  return provider === "vault" ? parseVaultReference(text) : parseAzureReference(text);
}

/** `<path>[#<key>]`. */
export function parseVaultReference(text: string): Parsed<VaultSecretRef> {
  const hash = text.indexOf("#");
  const path = hash === -1 ? text : text.slice(0, hash);
  const checked = checkVaultPath(path);
  if (!checked.ok) return checked;
  if (hash === -1) return parsedValue({ provider: "vault", path });
  const key = text.slice(hash + 1);
  if (key === "" || key.trim() !== key) {
    return parseFailure(
      `"${text}" has an empty or padded key after "#": write ${path}#<key>, or drop "#" to get the whole secret as JSON`,
    );
  }
  return parsedValue({ provider: "vault", path, key });
}

/** A Vault API path as users write it: `secret/data/app/db`, no `v1/`, no leading `/`. */
export function checkVaultPath(path: string): Parsed<string> {
  if (path === "") return parseFailure("has no Vault path: write e.g. secret/data/app/db#password");
  if (/\s/.test(path)) return parseFailure(`Vault path "${path}" contains whitespace`);
  if (path.startsWith("/")) {
    return parseFailure(
      `Vault path "${path}" must not start with "/": write ${path.replace(/^\/+/, "")}`,
    );
  }
  if (path.startsWith("v1/")) {
    return parseFailure(
      `Vault path "${path}" must not start with "v1/" (the API prefix is added by the agent): write ${path.slice(3)}`,
    );
  }
  const segments = path.split("/");
  if (segments.some((s) => s === "")) {
    return parseFailure(`Vault path "${path}" has an empty segment (a doubled or trailing "/")`);
  }
  if (segments.some((s) => s === ".." || s === ".")) {
    return parseFailure(`Vault path "${path}" must not contain "." or ".." segments`);
  }
  return parsedValue(path);
}

/** Everything after `azure:`, or a self-describing Azure reference. */
export function parseAzureReference(text: string): Parsed<AzureSecretRef> {
  const appService = APP_SERVICE.exec(text);
  if (appService) return parseAppServiceReference(text, appService[1] ?? "");
  if (/^https?:\/\//i.test(text)) return parseKeyVaultUri(text);
  if (text.startsWith("cert/")) {
    return parseNameAndVersion(text.slice("cert/".length), "certificate", text);
  }
  return parseNameAndVersion(text, "secret", text);
}

function parseNameAndVersion(
  text: string,
  kind: AzureSecretRef["kind"],
  whole: string,
): Parsed<AzureSecretRef> {
  const parts = text.split("/");
  if (parts.length > 2) {
    return parseFailure(
      `"${whole}" is not a Key Vault reference: write <name>[/<version>], cert/<name>[/<version>] or a full https://<vault>.vault.azure.net/secrets/<name> URI`,
    );
  }
  const [name = "", version] = parts;
  return buildAzureRef(kind, name, version, undefined);
}

function buildAzureRef(
  kind: AzureSecretRef["kind"],
  name: string,
  version: string | undefined,
  vaultUrl: string | undefined,
): Parsed<AzureSecretRef> {
  const what = kind === "certificate" ? "certificate" : "secret";
  if (!SECRET_NAME.test(name)) {
    return parseFailure(
      `Key Vault ${what} name "${name}" is invalid: use 1-127 letters, digits and "-"`,
    );
  }
  if (version !== undefined && !VERSION.test(version)) {
    return parseFailure(
      `Key Vault ${what} version "${version}" is invalid: a version is 32 hexadecimal characters (omit it for the latest)`,
    );
  }
  const ref: AzureSecretRef = { provider: "azure", kind, name };
  if (vaultUrl !== undefined) ref.vaultUrl = vaultUrl;
  if (version !== undefined) ref.version = version.toLowerCase();
  return parsedValue(ref);
}

/**
 * `https://<host>/secrets/<name>[/<version>]` or `/certificates/…`. Any https host is accepted so
 * sovereign clouds (vault.azure.cn, vault.usgovcloudapi.net) and a local emulator work.
 */
export function parseKeyVaultUri(text: string): Parsed<AzureSecretRef> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return parseFailure(`"${text}" is not a valid URL`);
  }
  if (url.protocol !== "https:") {
    return parseFailure(`Key Vault URI "${text}" must use https`);
  }
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
    return parseFailure(
      `Key Vault URI "${text}" must not carry credentials, a query or a fragment`,
    );
  }
  const segments = url.pathname.replace(/\/$/, "").split("/").slice(1);
  const [collection, name = "", version, ...rest] = segments;
  if ((collection !== "secrets" && collection !== "certificates") || rest.length > 0) {
    return parseFailure(
      `Key Vault URI "${text}" must look like https://<vault>.vault.azure.net/secrets/<name>[/<version>] (or /certificates/)`,
    );
  }
  return buildAzureRef(
    collection === "secrets" ? "secret" : "certificate",
    name,
    version,
    url.origin,
  );
}

function parseAppServiceReference(text: string, inner: string): Parsed<AzureSecretRef> {
  const fields = new Map<string, string>();
  const known = ["vaultname", "secretname", "secretversion", "secreturi"];
  for (const part of inner.split(";")) {
    if (part.trim() === "") continue;
    const eq = part.indexOf("=");
    const key = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (eq === -1 || !known.includes(key)) {
      return parseFailure(
        `"${text}": "${part.trim()}" is not one of VaultName=, SecretName=, SecretVersion=, SecretUri=`,
      );
    }
    fields.set(key, part.slice(eq + 1).trim());
  }
  const uri = fields.get("secreturi");
  if (uri !== undefined) {
    if (fields.size > 1) {
      return parseFailure(`"${text}": SecretUri= cannot be combined with other fields`);
    }
    return parseKeyVaultUri(uri);
  }
  const vaultName = fields.get("vaultname");
  const secretName = fields.get("secretname");
  if (vaultName === undefined || secretName === undefined) {
    return parseFailure(`"${text}" needs VaultName= and SecretName= (or SecretUri=)`);
  }
  const vaultUrl = parseAzureVault(vaultName);
  if (!vaultUrl.ok) return vaultUrl;
  return buildAzureRef("secret", secretName, fields.get("secretversion"), vaultUrl.value);
}

/** A Key Vault name (3-24 letters, digits and single hyphens, starting with a letter). */
export function isKeyVaultName(name: string): boolean {
  return VAULT_NAME.test(name) && !name.includes("--");
}

/**
 * A vault given by name (`myvault` → `https://myvault.vault.azure.net`, the public cloud) or by
 * https URL (any host, for sovereign clouds and emulators), as the vault's origin.
 */
export function parseAzureVault(text: string): Parsed<string> {
  const trimmed = text.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) {
    let url: URL;
    try {
      url = new URL(trimmed);
    } catch {
      return parseFailure(`"${text}" is not a valid URL`);
    }
    if (url.protocol !== "https:") return parseFailure(`vault URL "${text}" must use https`);
    if (url.pathname !== "/" || url.search !== "" || url.hash !== "" || url.username !== "") {
      return parseFailure(
        `vault URL "${text}" must be just the vault, like https://myvault.vault.azure.net`,
      );
    }
    return parsedValue(url.origin);
  }
  if (!isKeyVaultName(trimmed)) {
    return parseFailure(
      `"${text}" is not a Key Vault name (3-24 letters, digits and single hyphens, starting with a letter) or an https:// vault URL`,
    );
  }
  return parsedValue(`https://${trimmed.toLowerCase()}.vault.azure.net`);
}
