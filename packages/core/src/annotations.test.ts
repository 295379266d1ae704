import { describe, expect, it } from "vitest";
import {
  SETTINGS,
  checkFileName,
  parseMountPath,
  parseOnChange,
  parseVaultAddresses,
  settingForAnnotation,
  unknownAnnotationProblems,
} from "./annotations.js";
import { editDistance, nearestName } from "./nearest-name.js";
import { SETTING_NAMES } from "./policy-types.js";

describe("the annotation contract", () => {
  it("has one dso.io/<name> annotation per policy setting", () => {
    for (const name of SETTING_NAMES) {
      expect(SETTINGS[name].annotation).toBe(`dso.io/${name}`);
      expect(settingForAnnotation(`dso.io/${name}`)).toBe(name);
    }
  });

  it("has defaults that parse", () => {
    for (const name of SETTING_NAMES) {
      const fallback = SETTINGS[name].default;
      if (fallback !== undefined) expect(SETTINGS[name].parse(fallback).ok).toBe(true);
    }
  });

  it.each([
    ["dso.io/secert-db", 'is not a DSO annotation (did you mean "dso.io/secret-db"?)'],
    ["dso.io/templat-db", 'is not a DSO annotation (did you mean "dso.io/template-db"?)'],
    ["dso.io/injet", 'is not a DSO annotation (did you mean "dso.io/inject"?)'],
    ["dso.io/vault_role", 'is not a DSO annotation (did you mean "dso.io/vault-role"?)'],
    ["dso.io/mountpath", 'is not a DSO annotation (did you mean "dso.io/mount-path"?)'],
    ["dso.io/completely-different", "is not a DSO annotation"],
  ])("suggests the nearest key for %s", (key, message) => {
    expect(
      unknownAnnotationProblems({ [key]: "x", "dso.io/secret-ok": "a", "other.io/x": "y" }),
    ).toEqual([{ field: key, message }]);
  });
});

describe("setting parsers", () => {
  it.each([
    ["/var/run/secrets/dso", "/var/run/secrets/dso"],
    ["/etc//app/./secrets/", "/etc/app/secrets"],
  ])("mount path %s → %s", (raw, value) => {
    expect(parseMountPath(raw)).toEqual({ ok: true, value });
  });
  it.each(["relative/path", "/", "//", "/a/../b", "/a:b"])("refuses mount path %s", (raw) => {
    expect(parseMountPath(raw).ok).toBe(false);
  });

  it.each([
    ["rollout", { kind: "rollout" }],
    ["signal:SIGHUP:app", { kind: "signal", signal: "SIGHUP", container: "app" }],
    ["signal:usr1:app", { kind: "signal", signal: "SIGUSR1", container: "app" }],
    ["http://127.0.0.1:8080/-/reload", { kind: "http", url: "http://127.0.0.1:8080/-/reload" }],
    ["http://localhost:9000", { kind: "http", url: "http://localhost:9000/" }],
  ])("on-change %s", (raw, value) => {
    expect(parseOnChange(raw)).toEqual({ ok: true, value });
  });
  it.each([
    ["http://example.com:8080/reload", /on the pod itself/],
    ["https://127.0.0.1:8443/reload", /on the pod itself/],
    ["signal:HUP", /signal:<SIGNAL>:<container>/],
    ["signal:SIGHUPP:app", /did you mean "SIGHUP"/],
    ["restart", /must be http:\/\/127.0.0.1/],
  ])("refuses on-change %s", (raw, message) => {
    const parsed = parseOnChange(raw);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.message).toMatch(message);
  });

  it("vault addresses: comma-separated, normalized", () => {
    expect(parseVaultAddresses("https://a:8200/, http://b:8200")).toEqual({
      ok: true,
      value: ["https://a:8200", "http://b:8200"],
    });
    expect(parseVaultAddresses("ftp://a").ok).toBe(false);
    expect(parseVaultAddresses("https://user:pw@a").ok).toBe(false);
    expect(parseVaultAddresses(" , ").ok).toBe(false);
  });

  it.each([
    ["agent-cpu", "100m", true],
    ["agent-cpu", "0.5", true],
    ["agent-cpu", "0", false],
    ["agent-memory", "64Mi", true],
    ["agent-memory", "64MB", false],
    ["azure-client-id", "8A5B1C9E-2D3F-4E6A-9B7C-0D1E2F3A4B5C", true],
    ["azure-client-id", "not-a-guid", false],
    ["azure-tenant-id", "contoso.onmicrosoft.com", true],
    ["vault-ca-configmap", "vault-ca", true],
    ["vault-ca-configmap", "Vault_CA", false],
    ["vault-auth-path", "/auth/kubernetes/", true],
    ["vault-auth-path", "auth//x", false],
    ["vault-role", "my role", false],
    ["azure-auth", "managed-identity", true],
    ["containers", " , ", false],
  ] as const)("%s %j ok=%s", (name, raw, ok) => {
    expect(SETTINGS[name].parse(raw).ok).toBe(ok);
  });
});

describe("file names", () => {
  it.each(["db", "db.env", "tls.pem", "A_b-1", "x".repeat(54)])("accepts %s", (file) => {
    expect(checkFileName(file).ok).toBe(true);
  });
  it.each(["", ".", "..", "a/b", "a b", "é", "x".repeat(55)])("refuses %j", (file) => {
    expect(checkFileName(file).ok).toBe(false);
  });
});

describe("nearest names", () => {
  it("counts a transposition as one edit", () => {
    expect(editDistance("secert", "secret")).toBe(1);
    expect(editDistance("", "abc")).toBe(3);
  });
  it("suggests only plausible typos", () => {
    expect(nearestName("provder", ["provider", "mode"])).toBe("provider");
    expect(nearestName("xyz", ["provider", "mode"])).toBeUndefined();
  });
});
