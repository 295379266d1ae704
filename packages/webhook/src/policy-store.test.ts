import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_POLICY } from "@dso/core";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createMetrics } from "./metrics.js";
import { PolicyError, PolicyStore } from "./policy-store.js";
import { captureLogs, eventually } from "./test-helpers.js";

const policyYaml = (image: string): string => `apiVersion: dso.io/v1
kind: InjectionPolicy
defaults:
  provider: vault
  vault-address: https://vault.vault.svc:8200
agent:
  image: ${image}
namespaces:
  - match: ["kube-*"]
    injection: false
`;

const BAD_POLICY = `apiVersion: dso.io/v1
kind: InjectionPolicy
defaults:
  provider: vault
  mount-pth: /secrets
agent:
  sidecarStyle: sideways
  runAsUser: 0
`;

describe("PolicyStore", () => {
  let dir: string;
  let file: string;
  let store: PolicyStore | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "dso-policy-"));
    file = join(dir, "policy.yaml");
  });
  afterEach(() => {
    store?.close();
    store = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  // Atomic replacement, as kubelet does for ConfigMap volumes.
  const replace = (text: string): void => {
    writeFileSync(join(dir, ".tmp"), text);
    renameSync(join(dir, ".tmp"), file);
  };

  it("uses the default policy without a file", async () => {
    const logs = captureLogs();
    store = await PolicyStore.open({
      logger: logs.logger,
      metrics: createMetrics(new Registry()),
      pollIntervalMs: 1000,
    });
    expect(store.current()).toBe(DEFAULT_POLICY);
  });

  it("applies a good change, keeps the previous policy on a bad one, and logs every problem", async () => {
    writeFileSync(file, policyYaml("registry.example.com/dso/agent:1.0.0"));
    const logs = captureLogs();
    const metrics = createMetrics(new Registry());
    const changes: string[] = [];
    store = await PolicyStore.open({
      file,
      logger: logs.logger,
      metrics,
      pollIntervalMs: 200,
      debounceMs: 20,
      onChange: (p) => changes.push(p.agent.image),
    });
    const current = (): string => store?.current().agent.image ?? "";
    expect(current()).toBe("registry.example.com/dso/agent:1.0.0");
    expect(store.current().namespaces[0]?.injection).toBe(false);

    replace(policyYaml("registry.example.com/dso/agent:1.1.0"));
    await eventually(() => current() === "registry.example.com/dso/agent:1.1.0");
    expect(changes).toEqual(["registry.example.com/dso/agent:1.1.0"]);

    replace(BAD_POLICY);
    await eventually(() => logs.text().includes("policy reload rejected"));
    expect(current()).toBe("registry.example.com/dso/agent:1.1.0");
    const rejected = logs.lines().find((l) => String(l.msg).startsWith("policy reload rejected"));
    expect(rejected?.level).toBe("error");
    const fields = (rejected?.problems as { field: string }[]).map((p) => p.field);
    expect(fields).toEqual(
      expect.arrayContaining(["defaults.mount-pth", "agent.sidecarStyle", "agent.runAsUser"]),
    );
    for (const field of ["defaults.mount-pth", "agent.sidecarStyle", "agent.runAsUser"]) {
      expect(String(rejected?.msg)).toContain(field);
    }

    const text = await metrics.registry.metrics();
    expect(text).toContain('dso_webhook_policy_reloads_total{result="success"} 1');
    expect(text).toMatch(/dso_webhook_policy_reloads_total\{result="failure"\} [1-9]/);
  });

  it("refuses to start on a bad policy, listing every problem", async () => {
    writeFileSync(file, BAD_POLICY);
    const logs = captureLogs();
    const opening = PolicyStore.open({
      file,
      logger: logs.logger,
      metrics: createMetrics(new Registry()),
      pollIntervalMs: 1000,
    });
    await expect(opening).rejects.toBeInstanceOf(PolicyError);
    const error = (await opening.catch((e: unknown) => e)) as PolicyError;
    expect(error.code).toBe("POLICY_INVALID");
    expect(error.problems.map((p) => p.field)).toEqual(
      expect.arrayContaining(["defaults.mount-pth", "agent.sidecarStyle", "agent.runAsUser"]),
    );
    expect(error.message).toContain(file);
  });

  it("refuses to start on a missing policy file", async () => {
    const opening = PolicyStore.open({
      file: join(dir, "absent.yaml"),
      logger: captureLogs().logger,
      metrics: createMetrics(new Registry()),
      pollIntervalMs: 1000,
    });
    await expect(opening).rejects.toMatchObject({ code: "POLICY_READ_FAILED" });
  });
});
