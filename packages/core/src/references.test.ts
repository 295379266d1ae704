import { describe, expect, it } from "vitest";
import type { ProviderName, SecretRef } from "./agent-config.js";
import { parseAzureVault, parseSecretRef } from "./references.js";

const V = "0123456789abcdef0123456789abcdef";

describe("parseSecretRef accepts every syntax", () => {
  const cases: { text: string; provider?: ProviderName; ref: SecretRef }[] = [
    {
      text: "secret/data/app/db#password",
      provider: "vault",
      ref: { provider: "vault", path: "secret/data/app/db", key: "password" },
    },
    {
      text: "secret/app/db#password",
      provider: "vault",
      ref: { provider: "vault", path: "secret/app/db", key: "password" },
    },
    {
      text: "database/creds/app",
      provider: "vault",
      ref: { provider: "vault", path: "database/creds/app" },
    },
    { text: "vault:database/creds/app", ref: { provider: "vault", path: "database/creds/app" } },
    {
      text: "vault:secret/data/a#key.with.dots",
      provider: "azure",
      ref: { provider: "vault", path: "secret/data/a", key: "key.with.dots" },
    },
    {
      text: "  secret/data/a#k\n",
      provider: "vault",
      ref: { provider: "vault", path: "secret/data/a", key: "k" },
    },
    {
      text: "dso://secret/data/a#k",
      provider: "vault",
      ref: { provider: "vault", path: "secret/data/a", key: "k" },
    },
    {
      text: "db-password",
      provider: "azure",
      ref: { provider: "azure", kind: "secret", name: "db-password" },
    },
    {
      text: `db-password/${V}`,
      provider: "azure",
      ref: { provider: "azure", kind: "secret", name: "db-password", version: V },
    },
    { text: "azure:db-password", ref: { provider: "azure", kind: "secret", name: "db-password" } },
    {
      text: `azure:db-password/${V.toUpperCase()}`,
      ref: { provider: "azure", kind: "secret", name: "db-password", version: V },
    },
    {
      text: "dso://db-password",
      provider: "azure",
      ref: { provider: "azure", kind: "secret", name: "db-password" },
    },
    {
      text: "azure:cert/web-tls",
      ref: { provider: "azure", kind: "certificate", name: "web-tls" },
    },
    {
      text: `azure:cert/web-tls/${V}`,
      ref: { provider: "azure", kind: "certificate", name: "web-tls", version: V },
    },
    {
      text: "cert/web-tls",
      provider: "azure",
      ref: { provider: "azure", kind: "certificate", name: "web-tls" },
    },
    {
      text: "https://myvault.vault.azure.net/secrets/db-password",
      ref: {
        provider: "azure",
        kind: "secret",
        name: "db-password",
        vaultUrl: "https://myvault.vault.azure.net",
      },
    },
    {
      text: `https://MyVault.vault.azure.net/secrets/db-password/${V}/`,
      provider: "vault",
      ref: {
        provider: "azure",
        kind: "secret",
        name: "db-password",
        version: V,
        vaultUrl: "https://myvault.vault.azure.net",
      },
    },
    {
      text: "https://kv.vault.azure.cn/certificates/web",
      ref: {
        provider: "azure",
        kind: "certificate",
        name: "web",
        vaultUrl: "https://kv.vault.azure.cn",
      },
    },
    {
      text: "https://kv.vault.usgovcloudapi.net/secrets/x",
      ref: {
        provider: "azure",
        kind: "secret",
        name: "x",
        vaultUrl: "https://kv.vault.usgovcloudapi.net",
      },
    },
    {
      text: "https://127.0.0.1:8443/secrets/emulated",
      ref: {
        provider: "azure",
        kind: "secret",
        name: "emulated",
        vaultUrl: "https://127.0.0.1:8443",
      },
    },
    {
      text: "azure:https://kv.vault.azure.net/secrets/x",
      ref: { provider: "azure", kind: "secret", name: "x", vaultUrl: "https://kv.vault.azure.net" },
    },
    {
      text: "@Microsoft.KeyVault(VaultName=myvault;SecretName=mysecret)",
      ref: {
        provider: "azure",
        kind: "secret",
        name: "mysecret",
        vaultUrl: "https://myvault.vault.azure.net",
      },
    },
    {
      text: `@Microsoft.KeyVault(VaultName=myvault; SecretName=mysecret; SecretVersion=${V};)`,
      ref: {
        provider: "azure",
        kind: "secret",
        name: "mysecret",
        version: V,
        vaultUrl: "https://myvault.vault.azure.net",
      },
    },
    {
      text: "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/mysecret/)",
      ref: {
        provider: "azure",
        kind: "secret",
        name: "mysecret",
        vaultUrl: "https://myvault.vault.azure.net",
      },
    },
    {
      text: `@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/mysecret/${V})`,
      ref: {
        provider: "azure",
        kind: "secret",
        name: "mysecret",
        version: V,
        vaultUrl: "https://myvault.vault.azure.net",
      },
    },
    {
      text: "azure:@Microsoft.KeyVault(secretname=s;vaultname=v-1-x)",
      ref: {
        provider: "azure",
        kind: "secret",
        name: "s",
        vaultUrl: "https://v-1-x.vault.azure.net",
      },
    },
  ];
  it.each(cases)("$text (default $provider)", ({ text, provider, ref }) => {
    expect(parseSecretRef(text, { field: "dso.io/secret-x", defaultProvider: provider })).toEqual({
      ok: true,
      ref,
    });
  });
});

describe("parseSecretRef refuses with a problem naming the annotation", () => {
  const cases: { text: string; provider?: ProviderName; message: RegExp }[] = [
    { text: "", provider: "vault", message: /is empty/ },
    {
      text: "secret/data/a",
      message:
        /cannot tell which provider "secret\/data\/a" is for: prefix it with vault: or azure:/,
    },
    { text: "dso://x", message: /none is set/ },
    {
      text: "/secret/data/a",
      provider: "vault",
      message: /must not start with "\/": write secret\/data\/a/,
    },
    { text: "v1/secret/data/a", provider: "vault", message: /must not start with "v1\/"/ },
    { text: "secret//a", provider: "vault", message: /empty segment/ },
    { text: "secret/a/", provider: "vault", message: /empty segment/ },
    { text: "secret/../sys/x", provider: "vault", message: /"\." or "\.\." segments/ },
    { text: "secret/my app", provider: "vault", message: /whitespace/ },
    { text: "secret/a#", provider: "vault", message: /empty or padded key/ },
    { text: "vault:#k", message: /has no Vault path/ },
    {
      text: "azure:db_password",
      message: /secret name "db_password" is invalid: use 1-127 letters, digits and "-"/,
    },
    { text: `azure:${"a".repeat(128)}`, message: /is invalid/ },
    {
      text: "azure:db/v1",
      message: /version "v1" is invalid: a version is 32 hexadecimal characters/,
    },
    { text: "azure:a/b/c", message: /not a Key Vault reference/ },
    { text: "azure:cert/bad.name", message: /certificate name "bad.name" is invalid/ },
    { text: "http://kv.vault.azure.net/secrets/x", message: /must use https/ },
    {
      text: "https://kv.vault.azure.net/keys/x",
      message: /must look like https:\/\/<vault>.vault.azure.net\/secrets/,
    },
    { text: "https://kv.vault.azure.net/secrets/x?api-version=7.4", message: /query/ },
    { text: "https://kv.vault.azure.net/secrets/x/v/extra", message: /must look like/ },
    { text: "https://", message: /not a valid URL/ },
    { text: "@Microsoft.KeyVault(VaultName=myvault)", message: /needs VaultName= and SecretName=/ },
    {
      text: "@Microsoft.KeyVault(VaultName=my--vault;SecretName=s)",
      message: /not a Key Vault name/,
    },
    {
      text: "@Microsoft.KeyVault(Vault=myvault;SecretName=s)",
      message: /"Vault=myvault" is not one of VaultName=/,
    },
    {
      text: "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/s;SecretName=s)",
      message: /cannot be combined/,
    },
  ];
  it.each(cases)("$text", ({ text, provider, message }) => {
    const parsed = parseSecretRef(text, { field: "dso.io/secret-db", defaultProvider: provider });
    if (parsed.ok) throw new Error(`expected a problem for ${text}`);
    expect(parsed.problem.field).toBe("dso.io/secret-db");
    expect(parsed.problem.message).toMatch(message);
  });
});

describe("parseAzureVault", () => {
  it.each([
    ["myvault", "https://myvault.vault.azure.net"],
    ["My-Vault-01", "https://my-vault-01.vault.azure.net"],
    ["https://kv.vault.azure.cn/", "https://kv.vault.azure.cn"],
    ["https://127.0.0.1:8443", "https://127.0.0.1:8443"],
  ])("%s → %s", (text, url) => {
    expect(parseAzureVault(text)).toEqual({ ok: true, value: url });
  });
  it.each([
    "ab",
    "1vault",
    "vault-",
    "my--vault",
    "a".repeat(25),
    "http://kv.vault.azure.net",
    "https://kv.vault.azure.net/secrets",
  ])("refuses %s", (text) => {
    expect(parseAzureVault(text).ok).toBe(false);
  });
});
