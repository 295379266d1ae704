import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  AGENT_CONFIG_ENV,
  DEFAULT_POLICY,
  mutatePod,
  type AgentConfig,
  type Container,
  type Pod,
  type Plain,
} from "@dso/core";
import type { V1PodTemplateSpec } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const bin = fileURLToPath(new URL("../bin/dso.js", import.meta.url));
const testdata = (name: string): string =>
  fileURLToPath(new URL(`./testdata/${name}`, import.meta.url));

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function dso(args: string[], input?: string): Run {
  const result = spawnSync(process.execPath, [bin, ...args], {
    encoding: "utf8",
    ...(input === undefined ? {} : { input }),
    timeout: 15_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

type Json = Record<string, unknown>;

/** The non-empty documents of a multi-document YAML text. */
function documents(text: string): Json[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(d.errors[0]?.message);
      return d.toJS() as Json | null;
    })
    .filter((d): d is Json => d !== null);
}

function templateOf(doc: Json, path: string[]): Plain<V1PodTemplateSpec> {
  let node: unknown = doc;
  for (const key of path) node = (node as Json)[key];
  return node as Plain<V1PodTemplateSpec>;
}

function agentConfig(spec: Pod["spec"]): AgentConfig {
  const init = spec?.initContainers?.find((c: Container) => c.name === "dso-agent-init");
  return JSON.parse(
    init?.env?.find((e) => e.name === AGENT_CONFIG_ENV)?.value ?? "null",
  ) as AgentConfig;
}

beforeAll(() => {
  // The tests run the real executable; make sure it matches the sources. `-p` builds this
  // package only (not @dso/core), so parallel test files never write the same outputs.
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", join(packageDir, "tsconfig.json")], {
    stdio: "inherit",
  });
}, 60_000);

describe("dso inject", () => {
  it("injects the annotated workload of a multi-document file and passes the rest through", () => {
    const run = dso(["inject", "-f", testdata("multi.yaml"), "--namespace", "payments"]);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);

    const input = documents(readFileSync(testdata("multi.yaml"), "utf8"));
    const output = documents(run.stdout);
    expect(output.map((d) => d.kind)).toEqual([
      "ConfigMap",
      "Deployment",
      "Service",
      "StatefulSet",
    ]);
    // Documents without an injected pod come out exactly as they went in.
    expect(output[0]).toEqual(input[0]);
    expect(output[2]).toEqual(input[2]);
    expect(output[3]).toEqual(input[3]);
    expect(run.stdout).toContain("LOG_LEVEL: info # kept as is");

    // The Deployment's template is exactly what the webhook makes of its pods.
    const template = templateOf(input[1] ?? {}, ["spec", "template"]);
    const expected = mutatePod(
      { apiVersion: "v1", kind: "Pod", ...template },
      {
        namespace: "payments",
        policy: DEFAULT_POLICY,
      },
    );
    if (expected.kind !== "patch") throw new Error(`expected a patch, got ${expected.kind}`);
    const injected = templateOf(output[1] ?? {}, ["spec", "template"]);
    expect(injected.metadata).toEqual(expected.pod.metadata);
    expect(injected.spec).toEqual(expected.pod.spec);
    expect(injected.spec?.initContainers?.map((c) => c.name)).toEqual([
      "dso-agent-init",
      "dso-agent",
      "migrate",
    ]);
    expect(agentConfig(injected.spec).pod?.namespace).toBe("payments");
    expect((output[1]?.spec as Json).replicas).toBe(3);
  });

  it("prints plain YAML without anchors or aliases, as kubectl users expect", () => {
    // The init container and the sidecar share env objects; YAML aliases would be valid but
    // unreadable and break naive tooling that greps the output.
    const run = dso(["inject", "-f", join(packageDir, "../../examples/vault-kv/deployment.yaml")]);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain("name: dso-agent-init");
    expect(run.stdout).not.toMatch(/[&*]a\d+\b/);
  });

  it("injects a CronJob's job template, using the document's namespace", () => {
    const run = dso(["inject", "-f", testdata("cronjob.yaml"), "-n", "ignored"]);
    expect(run.status).toBe(0);
    const [cronJob] = documents(run.stdout);
    const template = templateOf(cronJob ?? {}, ["spec", "jobTemplate", "spec", "template"]);
    expect(template.metadata?.annotations?.["dso.io/injected"]).toBe("true");
    expect(template.spec?.initContainers?.map((c) => c.name)).toEqual([
      "dso-agent-init",
      "dso-agent",
    ]);
    const config = agentConfig(template.spec);
    expect(config.pod?.namespace).toBe("reports");
    expect(config.azure?.vaultUrl).toBe("https://reports-kv.vault.azure.net");
    expect((cronJob?.spec as Json).schedule).toBe("0 2 * * *");
  });

  it("injects the items of a kubectl List", () => {
    const run = dso(["inject", "-f", testdata("list.yaml")]);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    const [list] = documents(run.stdout);
    const items = list?.items as Json[];
    expect(items.map((i) => i.kind)).toEqual(["ConfigMap", "Deployment"]);
    expect((items[0]?.data as Json).region).toBe("eu-west-1");
    const template = templateOf(items[1] ?? {}, ["spec", "template"]);
    expect(template.spec?.initContainers?.map((c) => c.name)).toEqual([
      "dso-agent-init",
      "dso-agent",
    ]);
    expect(agentConfig(template.spec).pod?.namespace).toBe("inventory");
    expect(run.stdout).toContain("# As printed by: kubectl get deployment,configmap -o yaml");
  });

  it("reads stdin with -f - and defaults the namespace to default", () => {
    const run = dso(["inject", "-f", "-"], readFileSync(testdata("pod.yaml"), "utf8"));
    expect(run.status).toBe(0);
    const [pod] = documents(run.stdout) as Pod[];
    // init-only: the init container and no sidecar.
    expect(pod?.spec?.initContainers?.map((c) => c.name)).toEqual(["dso-agent-init"]);
    expect(agentConfig(pod?.spec).pod?.namespace).toBe("default");
  });

  it("refuses with the webhook's message on stderr, exit 1 and nothing on stdout", () => {
    const run = dso(["inject", "-f", testdata("refused.yaml")]);
    expect(run.status).toBe(1);
    expect(run.stdout).toBe("");
    const lines = run.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: Job\/db-migrate: /);
    expect(lines[0]).toContain("dso.io/secert-db");
    expect(lines[0]).toContain("dso.io/secret-db");
  });

  it("applies a policy file: its defaults, image and namespace rules", () => {
    const ok = dso(["inject", "-f", testdata("pod.yaml"), "--policy", testdata("policy.yaml")]);
    expect(ok.status).toBe(0);
    const [pod] = documents(ok.stdout) as Pod[];
    expect(pod?.spec?.initContainers?.[0]?.image).toBe("registry.example.com/dso/agent:9.9.9");

    const ledger = readFileSync(testdata("pod.yaml"), "utf8").replace(
      "name: debug-shell",
      "name: debug-shell\n  namespace: ledger",
    );
    const refused = dso(["inject", "-f", "-", "--policy", testdata("policy.yaml")], ledger);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/^error: Pod\/debug-shell: /);
  });

  const failures: [string, string[], number, RegExp][] = [
    ["a missing -f", ["inject"], 2, /needs -f/],
    ["an unknown flag", ["inject", "-f", "x.yaml", "--bogus"], 2, /bogus/],
    ["an unknown command", ["deploy"], 2, /unknown command "deploy"/],
    [
      "a missing file",
      ["inject", "-f", "/nonexistent/app.yaml"],
      1,
      /cannot read \/nonexistent\/app.yaml: ENOENT/,
    ],
    [
      "an invalid policy",
      ["inject", "-f", "-", "--policy", "/dev/null"],
      1,
      /policy file \/dev\/null is invalid/,
    ],
  ];
  it.each(failures)("reports %s", (_name, args, status, message) => {
    const run = dso(args, "");
    expect(run.status).toBe(status);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(message);
  });

  it("reads client and tenant ids from a ServiceAccount in the input when the policy lets the webhook", () => {
    const dir = mkdtempSync(join(tmpdir(), "dso-cli-"));
    const policy = join(dir, "policy.yaml");
    writeFileSync(
      policy,
      "apiVersion: dso.io/v1\nkind: InjectionPolicy\nreadServiceAccounts: true\n",
    );
    const withPolicy = dso(["inject", "-f", testdata("azure-sa.yaml"), "--policy", policy]);
    expect(withPolicy.stderr).toBe("");
    expect(withPolicy.status).toBe(0);
    const deployment = documents(withPolicy.stdout).find((d) => d.kind === "Deployment");
    const spec = templateOf(deployment ?? {}, ["spec", "template"]).spec;
    expect(agentConfig(spec).azure).toMatchObject({
      clientId: "5f0c5e2a-9d1b-4c55-8a7e-0b9f3c1d2e4f",
      tenantId: "72f988bf-86f1-41af-91ab-2d7cd011db47",
    });

    // Without that policy the webhook never reads service accounts, and neither does the preview.
    const without = dso(["inject", "-f", testdata("azure-sa.yaml")]);
    expect(without.status).toBe(1);
    expect(without.stderr).toMatch(/azure-client-id/);
  });

  it("reports invalid YAML with the document number", () => {
    const run = dso(["inject", "-f", "-"], "kind: ConfigMap\n---\nkind: [unclosed\n");
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^error: stdin: document 2 is not valid YAML/);
  });
});

describe("dso", () => {
  it("prints help and version", () => {
    const help = dso(["--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("dso inject -f <file|->");
    const version = dso(["version"]);
    expect(version.status).toBe(0);
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
      version: string;
    };
    expect(version.stdout).toBe(`dso ${pkg.version}\n`);
  });
});
