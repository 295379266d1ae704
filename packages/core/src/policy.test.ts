import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_POLICY,
  formatFileMode,
  globMatches,
  namespaceRuleFor,
  namespaceRuleProblems,
  parsePolicy,
  resolveSetting,
} from "./policy.js";
import type { Policy } from "./policy-types.js";

const header = "apiVersion: dso.io/v1\nkind: InjectionPolicy\n";

function parsed(yaml: string): Policy {
  const result = parsePolicy(header + yaml);
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.policy;
}

describe("parsePolicy", () => {
  it("fills every missing field from the defaults", () => {
    expect(parsePolicy(header)).toEqual({ ok: true, policy: DEFAULT_POLICY });
    expect(DEFAULT_POLICY.agent).toEqual({
      image: "ghcr.io/dso-project/dso-agent:0.1.0",
      sidecarStyle: "native",
      runAsUser: 65532,
      filesGroup: 65532,
      fileMode: 0o440,
      tokenExpirationSeconds: 600,
      revokeOnShutdown: false,
      telemetryPort: 8099,
    });
  });

  it("reads a full policy, merging defaults", () => {
    const policy = parsed(`
defaults:
  provider: vault
  vault-address: https://vault.example.com:8200
  refresh: 10m
  agent-cpu: 1
allowOverrides: [vault-role, containers, refresh]
agent:
  image: registry.internal/dso-agent:0.1.0
  imagePullPolicy: Always
  sidecarStyle: classic
  runAsUser: 10001
  filesGroup: 10001
  fileMode: "0640"
  tokenExpirationSeconds: 3600
  revokeOnShutdown: true
  telemetryPort: 9099
readServiceAccounts: true
namespaces:
  - match: [kube-system, dso-system]
    injection: false
  - match: team-*
    allowedProviders: [vault]
    allowedVaultAddresses: ["https://vault.example.com:8200/"]
    allowedVaultRoles: ["team-*"]
    allowedAzureVaults: [teamkv, "https://other.vault.azure.net"]
`);
    expect(policy.defaults).toEqual({
      ...DEFAULT_POLICY.defaults,
      provider: "vault",
      "vault-address": "https://vault.example.com:8200",
      refresh: "10m",
      "agent-cpu": "1",
    });
    expect(policy.allowOverrides).toEqual(["vault-role", "containers", "refresh"]);
    expect(policy.agent).toEqual({
      image: "registry.internal/dso-agent:0.1.0",
      imagePullPolicy: "Always",
      sidecarStyle: "classic",
      runAsUser: 10001,
      filesGroup: 10001,
      fileMode: 0o640,
      tokenExpirationSeconds: 3600,
      revokeOnShutdown: true,
      telemetryPort: 9099,
    });
    expect(policy.readServiceAccounts).toBe(true);
    expect(policy.namespaces).toEqual([
      { match: ["kube-system", "dso-system"], injection: false },
      {
        match: ["team-*"],
        allowedProviders: ["vault"],
        allowedVaultAddresses: ["https://vault.example.com:8200"],
        allowedVaultRoles: ["team-*"],
        allowedAzureVaults: ["https://teamkv.vault.azure.net", "https://other.vault.azure.net"],
      },
    ]);
  });

  it("accepts JSON", () => {
    const result = parsePolicy(
      JSON.stringify({
        apiVersion: "dso.io/v1",
        kind: "InjectionPolicy",
        defaults: { mode: "init-only" },
      }),
    );
    expect(result.ok && result.policy.defaults.mode).toBe("init-only");
  });

  it("lists every problem with its path, suggesting known names", () => {
    const result = parsePolicy(`apiVersion: dso.io/v2
kind: InjectionPolicy
defualts: {}
defaults:
  refresh: 1s
  provider: gcp
  mount-pth: /x
allowOverrides: [vault-adress, "*"]
agent:
  fileMode: 0440
  runAsUser: 0
  sidecarStyle: nativ
  imag: x
  tokenExpirationSeconds: 60
readServiceAccounts: "yes"
namespaces:
  - match: [a]
    allowedProviders: [vault]
  - match: []
  - match: [team-*]
    allowedProviders: [vault, aws]
    allowedVaultAddresses: [vault.example.com]
    allowedAzureVaults: [bad_vault]
    allowedVaultRole: [x]
  - just-a-string
`);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const byField = Object.fromEntries(result.problems.map((p) => [p.field, p.message]));
    expect(Object.keys(byField).sort()).toEqual(
      [
        "apiVersion",
        "defualts",
        "defaults.refresh",
        "defaults.provider",
        "defaults.mount-pth",
        "allowOverrides[0]",
        "agent.fileMode",
        "agent.runAsUser",
        "agent.sidecarStyle",
        "agent.imag",
        "agent.tokenExpirationSeconds",
        "readServiceAccounts",
        "namespaces[1].match",
        "namespaces[2].allowedProviders[1]",
        "namespaces[2].allowedVaultAddresses[0]",
        "namespaces[2].allowedAzureVaults[0]",
        "namespaces[2].allowedVaultRole",
        "namespaces[3]",
      ].sort(),
    );
    expect(byField.defualts).toMatch(/is not a policy field \(did you mean "defaults"\?\)/);
    expect(byField["defaults.mount-pth"]).toMatch(/did you mean "mount-path"/);
    expect(byField["allowOverrides[0]"]).toMatch(/did you mean "vault-address"/);
    expect(byField["agent.imag"]).toMatch(/did you mean "image"/);
    expect(byField["agent.fileMode"]).toMatch(/quoted octal string like "0440", not a number/);
    expect(byField["agent.sidecarStyle"]).toMatch(
      /must be one of native, classic, not "nativ" \(did you mean "native"\?\)/,
    );
    expect(byField["agent.tokenExpirationSeconds"]).toMatch(/from 600/);
    expect(byField["namespaces[2].allowedVaultRole"]).toMatch(/did you mean "allowedVaultRoles"/);
    expect(byField["namespaces[2].allowedProviders[1]"]).toMatch(
      /must be one of vault, azure, not "aws"/,
    );
    expect(byField["defaults.refresh"]).toMatch(/at least 5s/);
  });

  it.each([
    ['"0444"', /gives other users access/],
    ['"0200"', /does not let the group read/],
    ['"440x"', /quoted octal string/],
  ])("refuses fileMode %s", (mode, message) => {
    const result = parsePolicy(`${header}agent:\n  fileMode: ${mode}\n`);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems[0]?.message).toMatch(message);
  });

  it.each([
    ["key: [unclosed", /is not valid YAML/],
    ["a: 1\na: 2", /is not valid YAML/],
    ["- a list", /must be a mapping/],
    ["", /must be a mapping, not null/],
  ])("refuses a broken document %j", (text, message) => {
    const result = parsePolicy(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems[0]?.message).toMatch(message);
  });

  it("formats modes as the file writes them", () => {
    expect(formatFileMode(0o440)).toBe("0440");
    expect(formatFileMode(0o40)).toBe("0040");
  });
});

describe("policy evaluation", () => {
  it.each([
    ["team-*", "team-a", true],
    ["team-*", "team", false],
    ["team-?", "team-ab", false],
    ["a.b", "axb", false],
    ["*", "anything", true],
  ])("glob %s vs %s", (pattern, value, matches) => {
    expect(globMatches(pattern, value)).toBe(matches);
  });

  it("uses the first matching namespace rule", () => {
    const policy = parsed(
      "namespaces:\n  - match: [prod-*]\n    allowedProviders: [azure]\n  - match: ['*']\n    allowedProviders: [vault]\n",
    );
    expect(namespaceRuleFor(policy, "prod-eu")?.index).toBe(0);
    expect(namespaceRuleFor(policy, "dev")?.index).toBe(1);
    expect(
      namespaceRuleProblems(policy, "dev", {
        providers: [{ value: "azure", field: "dso.io/secret-a" }],
        vaultAddresses: [],
        azureVaults: [],
      }),
    ).toEqual([
      {
        field: "dso.io/secret-a",
        message: `policy namespaces[1] (match *) allows providers [vault], not "azure"`,
      },
    ]);
  });

  it("resolves settings: annotation, then policy default, then built-in default", () => {
    const policy = parsed("defaults:\n  refresh: 10m\nallowOverrides: [mode]\n");
    expect(resolveSetting(policy, {}, "refresh")).toEqual({ raw: "10m", source: "policy" });
    expect(resolveSetting(DEFAULT_POLICY, {}, "agent-cpu")).toEqual({
      raw: "25m",
      source: "built-in",
    });
    expect(resolveSetting(DEFAULT_POLICY, {}, "provider")).toEqual({
      raw: undefined,
      source: "unset",
    });
    expect(resolveSetting(policy, { "dso.io/mode": "init-only" }, "mode")).toEqual({
      raw: "init-only",
      source: "annotation",
    });
    expect(resolveSetting(policy, { "dso.io/refresh": "10m" }, "refresh")).toEqual({
      raw: "10m",
      source: "annotation",
    });
    expect(resolveSetting(policy, { "dso.io/refresh": "1m" }, "refresh")).toEqual({
      raw: "10m",
      source: "policy",
      problem: {
        field: "dso.io/refresh",
        message:
          'the cluster policy does not allow pods to override "refresh" (policy allowOverrides)',
      },
    });
  });
});

describe("docs/policy.md", () => {
  const doc = readFileSync(new URL("../../../docs/policy.md", import.meta.url), "utf8");
  const examples = [...doc.matchAll(/```yaml\n(apiVersion: dso.io\/v1\n[\s\S]*?)```/g)].map(
    (m) => m[1] ?? "",
  );
  it("has examples", () => {
    expect(examples.length).toBeGreaterThanOrEqual(3);
  });
  it.each(examples)("example parses: %s", (example) => {
    expect(parsePolicy(example)).toMatchObject({ ok: true });
  });
});
