/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-explicit-any --
   the table mutates an untyped copy of a valid document to build invalid ones on purpose */
import { describe, expect, it } from "vitest";
import { parseAgentConfig, type AgentConfig } from "./agent-config.js";

const valid: AgentConfig = {
  apiVersion: "dso.io/v1",
  kind: "AgentConfig",
  mountPath: "/var/run/secrets/dso",
  statePath: "/var/run/dso/state",
  refreshSeconds: 300,
  fileMode: 0o440,
  secrets: [
    { file: "db.json", ref: { provider: "vault", path: "database/creds/app" } },
    { file: "password", ref: { provider: "vault", path: "secret/data/app/db", key: "password" } },
    {
      file: "db.url",
      ref: { provider: "vault", path: "secret/app/db" },
      template: "postgres://{{user}}:{{password}}@db/app",
    },
    { file: "tls.pem", ref: { provider: "azure", kind: "certificate", name: "web-tls" } },
    {
      file: "api-key",
      ref: {
        provider: "azure",
        kind: "secret",
        name: "api-key",
        version: "0123456789abcdef0123456789abcdef",
        vaultUrl: "https://other.vault.azure.net",
      },
    },
  ],
  onChange: { kind: "signal", signal: "SIGHUP", container: "app" },
  vault: {
    addresses: ["https://vault-0.vault:8200", "https://vault-1.vault:8200"],
    authMethod: "kubernetes",
    authPath: "auth/kubernetes",
    role: "app",
    tokenFile: "/var/run/secrets/dso.io/serviceaccount/token",
    namespace: "team-a",
    caFile: "/etc/dso/vault-ca.pem",
    revokeOnShutdown: true,
  },
  azure: {
    vaultUrl: "https://main.vault.azure.net",
    auth: "workload-identity",
    tenantId: "t",
    clientId: "c",
    tokenFile: "/var/run/secrets/azure/tokens/azure-identity-token",
    authorityHost: "https://login.microsoftonline.com",
    disableInstanceDiscovery: false,
    serviceVersion: "7.5",
    disableChallengeResourceVerification: false,
  },
  pod: { namespace: "team", name: "app-0", serviceAccount: "app" },
  telemetryPort: 8099,
};

function withChange(change: (c: Record<string, unknown>) => void): unknown {
  const c = structuredClone(valid) as unknown as Record<string, unknown>;
  change(c);
  return c;
}

type Mut = (c: any) => void;

describe("parseAgentConfig", () => {
  it("accepts a complete configuration unchanged", () => {
    expect(parseAgentConfig(structuredClone(valid))).toEqual({ ok: true, config: valid });
  });

  it("accepts a minimal render configuration", () => {
    const minimal = {
      apiVersion: "dso.io/v1",
      kind: "AgentConfig",
      mountPath: "./secrets",
      refreshSeconds: 60,
      fileMode: 0o400,
      secrets: [{ file: "token", ref: { provider: "vault", path: "kv/app", key: "token" } }],
      vault: {
        addresses: ["http://127.0.0.1:8200"],
        authMethod: "approle",
        authPath: "auth/approle",
        roleIdFile: "r",
        secretIdFile: "s",
      },
    };
    expect(parseAgentConfig(minimal).ok).toBe(true);
  });

  const cases: { name: string; change: Mut; fields: string[] }[] = [
    {
      name: "wrong apiVersion",
      change: (c) => (c.apiVersion = "dso.io/v2"),
      fields: ["apiVersion"],
    },
    { name: "missing apiVersion", change: (c) => delete c.apiVersion, fields: ["apiVersion"] },
    { name: "wrong kind", change: (c) => (c.kind = "Pod"), fields: ["kind"] },
    { name: "unknown top-level key", change: (c) => (c.mountpath = "/x"), fields: ["mountpath"] },
    { name: "missing mountPath", change: (c) => delete c.mountPath, fields: ["mountPath"] },
    { name: "empty statePath", change: (c) => (c.statePath = ""), fields: ["statePath"] },
    {
      name: "refreshSeconds not an integer",
      change: (c) => (c.refreshSeconds = 1.5),
      fields: ["refreshSeconds"],
    },
    {
      name: "refreshSeconds zero",
      change: (c) => (c.refreshSeconds = 0),
      fields: ["refreshSeconds"],
    },
    { name: "world-readable fileMode", change: (c) => (c.fileMode = 0o444), fields: ["fileMode"] },
    { name: "fileMode out of range", change: (c) => (c.fileMode = 0o1777), fields: ["fileMode"] },
    { name: "fileMode as string", change: (c) => (c.fileMode = "0440"), fields: ["fileMode"] },
    {
      name: "telemetryPort out of range",
      change: (c) => (c.telemetryPort = 70000),
      fields: ["telemetryPort"],
    },
    { name: "no secrets", change: (c) => (c.secrets = []), fields: ["secrets"] },
    { name: "secrets not a list", change: (c) => (c.secrets = {}), fields: ["secrets"] },
    {
      name: "file with a directory",
      change: (c) => (c.secrets[0].file = "a/b"),
      fields: ["secrets[0].file"],
    },
    {
      name: "file reserved name",
      change: (c) => (c.secrets[0].file = "..data"),
      fields: ["secrets[0].file"],
    },
    {
      name: "duplicate file",
      change: (c) => (c.secrets[1].file = "db.json"),
      fields: ["secrets[1].file"],
    },
    {
      name: "unknown secret key",
      change: (c) => (c.secrets[0].mode = 1),
      fields: ["secrets[0].mode"],
    },
    {
      name: "template not a string",
      change: (c) => (c.secrets[2].template = 3),
      fields: ["secrets[2].template"],
    },
    { name: "missing ref", change: (c) => delete c.secrets[0].ref, fields: ["secrets[0].ref"] },
    {
      name: "unknown provider",
      change: (c) => (c.secrets[0].ref.provider = "aws"),
      fields: ["secrets[0].ref.provider"],
    },
    {
      name: "vault path with v1/",
      change: (c) => (c.secrets[0].ref.path = "v1/secret/x"),
      fields: ["secrets[0].ref.path"],
    },
    {
      name: "vault path with leading slash",
      change: (c) => (c.secrets[0].ref.path = "/secret/x"),
      fields: ["secrets[0].ref.path"],
    },
    {
      name: "vault path with ..",
      change: (c) => (c.secrets[0].ref.path = "secret/../x"),
      fields: ["secrets[0].ref.path"],
    },
    {
      name: "azure field on vault ref",
      change: (c) => (c.secrets[0].ref.name = "x"),
      fields: ["secrets[0].ref.name"],
    },
    {
      name: "vault field on azure ref",
      change: (c) => (c.secrets[3].ref.key = "x"),
      fields: ["secrets[3].ref.key"],
    },
    {
      name: "azure bad kind",
      change: (c) => (c.secrets[3].ref.kind = "key"),
      fields: ["secrets[3].ref.kind"],
    },
    {
      name: "azure bad name",
      change: (c) => (c.secrets[3].ref.name = "web_tls"),
      fields: ["secrets[3].ref.name"],
    },
    {
      name: "azure bad version",
      change: (c) => (c.secrets[4].ref.version = "v-1"),
      fields: ["secrets[4].ref.version"],
    },
    {
      name: "azure http vaultUrl",
      change: (c) => (c.secrets[4].ref.vaultUrl = "http://x.vault.azure.net"),
      fields: ["secrets[4].ref.vaultUrl"],
    },
    {
      name: "azure ref without any vault URL",
      change: (c) => delete c.azure.vaultUrl,
      fields: ["secrets[3].ref.vaultUrl"],
    },
    {
      name: "vault ref without vault section",
      change: (c) => delete c.vault,
      fields: ["secrets[0].ref", "secrets[1].ref", "secrets[2].ref"],
    },
    {
      name: "azure ref without azure section",
      change: (c) => delete c.azure,
      fields: ["secrets[3].ref", "secrets[4].ref"],
    },
    {
      name: "vault no addresses",
      change: (c) => (c.vault.addresses = []),
      fields: ["vault.addresses"],
    },
    {
      name: "vault bad address",
      change: (c) => (c.vault.addresses = ["vault:8200", "ftp://x"]),
      fields: ["vault.addresses[0]", "vault.addresses[1]"],
    },
    {
      name: "vault bad authMethod",
      change: (c) => (c.vault.authMethod = "token"),
      fields: ["vault.authMethod"],
    },
    {
      name: "vault kubernetes without role and token file",
      change: (c) => {
        delete c.vault.role;
        delete c.vault.tokenFile;
      },
      fields: ["vault.role", "vault.tokenFile"],
    },
    {
      name: "vault approle without files",
      change: (c) => (c.vault.authMethod = "approle"),
      fields: ["vault.roleIdFile", "vault.secretIdFile"],
    },
    {
      name: "vault authPath with slash",
      change: (c) => (c.vault.authPath = "/auth/kubernetes"),
      fields: ["vault.authPath"],
    },
    {
      name: "vault revokeOnShutdown not boolean",
      change: (c) => (c.vault.revokeOnShutdown = "yes"),
      fields: ["vault.revokeOnShutdown"],
    },
    { name: "vault unknown key", change: (c) => (c.vault.token = "x"), fields: ["vault.token"] },
    {
      name: "azure bad auth",
      change: (c) => (c.azure.auth = "client-secret"),
      fields: ["azure.auth"],
    },
    {
      name: "azure workload identity without ids",
      change: (c) => {
        delete c.azure.tenantId;
        delete c.azure.clientId;
        delete c.azure.tokenFile;
      },
      fields: ["azure.tenantId", "azure.clientId", "azure.tokenFile"],
    },
    {
      name: "azure unknown key",
      change: (c) => (c.azure.clientSecret = "x"),
      fields: ["azure.clientSecret"],
    },
    {
      name: "azure authorityHost not a URL",
      change: (c) => (c.azure.authorityHost = "login"),
      fields: ["azure.authorityHost"],
    },
    { name: "pod unknown key", change: (c) => (c.pod.uid = "x"), fields: ["pod.uid"] },
    {
      name: "onChange unknown kind",
      change: (c) => (c.onChange = { kind: "exec" }),
      fields: ["onChange.kind"],
    },
    {
      name: "onChange http not localhost",
      change: (c) => (c.onChange = { kind: "http", url: "http://example.com/reload" }),
      fields: ["onChange.url"],
    },
    {
      name: "onChange bad signal",
      change: (c) => (c.onChange = { kind: "signal", signal: "SIGKILL", container: "app" }),
      fields: ["onChange.signal"],
    },
    {
      name: "onChange rollout extra key",
      change: (c) => (c.onChange = { kind: "rollout", url: "x" }),
      fields: ["onChange.url"],
    },
  ];

  it.each(cases)("reports $name at $fields", ({ change, fields }) => {
    const result = parseAgentConfig(withChange(change));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map((p) => p.field).sort()).toEqual([...fields].sort());
    for (const p of result.problems) expect(p.message.length).toBeGreaterThan(5);
  });

  it("lists every problem at once", () => {
    const result = parseAgentConfig({
      apiVersion: "v0",
      kind: "X",
      refreshSeconds: -1,
      fileMode: 0o777,
      secrets: [{}],
      extra: 1,
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map((p) => p.field).sort()).toEqual(
      [
        "apiVersion",
        "extra",
        "fileMode",
        "kind",
        "mountPath",
        "refreshSeconds",
        "secrets[0].file",
        "secrets[0].ref",
      ].sort(),
    );
  });

  it.each([null, [], "config", 42])("rejects a document that is not an object: %j", (input) => {
    const result = parseAgentConfig(input);
    expect(result).toEqual({
      ok: false,
      problems: [{ field: "", message: expect.stringContaining("must be an object") as string }],
    });
  });
});
