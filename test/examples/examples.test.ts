/**
 * The examples under examples/ stay valid as the product changes: every Kubernetes manifest goes
 * through the built `dso inject` (the webhook's mutation) and every annotated workload gets the
 * agent; every AgentConfig file passes `parseAgentConfig`; every README names the files beside it.
 *
 * File roles are decided by name, so nothing is silently left unchecked:
 * - `agent*.yaml`: an AgentConfig document (Docker Compose / `dso-agent render`);
 * - `compose.yaml`: a Docker Compose file running the agent image;
 * - `before-*.yaml`: the "before" side of a migration example, not a DSO manifest;
 * - any other `*.yaml`: Kubernetes manifests a user applies after installing the chart.
 */

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { Script } from "node:vm";
import { parse, parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";
import { AGENT_CONFIG_ENV, parseAgentConfig } from "../../packages/core/src/agent-config.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const EXAMPLES = join(ROOT, "examples");
const DSO_CLI = join(ROOT, "packages/cli/bin/dso.js");

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Names a directory's .gitignore lists literally (e.g. credentials a setup script writes). */
function ignoredIn(dir: string): Set<string> {
  const path = join(dir, ".gitignore");
  if (!existsSync(path)) return new Set();
  const lines = readFileSync(path, "utf8").split("\n");
  return new Set(lines.map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#")));
}

/** Every file under `dir` that belongs to the example, relative to it: no dotfiles, nothing ignored. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((path) => !path.split("/").some((part) => part.startsWith(".")))
    .filter((path) => statSync(join(dir, path)).isFile())
    .filter((path) => !ignoredIn(join(dir, dirname(path))).has(basename(path)))
    .sort();
}

const exampleDirs = readdirSync(EXAMPLES)
  .filter((name) => statSync(join(EXAMPLES, name)).isDirectory())
  .sort();
const allFiles = filesUnder(EXAMPLES);
const yamlFiles = allFiles.filter((f) => f.endsWith(".yaml") || f.endsWith(".yml"));

const isAgentConfigFile = (f: string) => /^agent.*\.ya?ml$/.test(basename(f));
const isComposeFile = (f: string) => /^(docker-)?compose\.ya?ml$/.test(basename(f));
const isBeforeFile = (f: string) => basename(f).startsWith("before-");

const agentConfigFiles = yamlFiles.filter(isAgentConfigFile);
const composeFiles = yamlFiles.filter(isComposeFile);
const beforeFiles = yamlFiles.filter(isBeforeFile);
const manifestFiles = yamlFiles.filter(
  (f) => !isAgentConfigFile(f) && !isComposeFile(f) && !isBeforeFile(f),
);

function documentsOf(text: string, file: string): Json[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message ?? ""}`);
      return doc.toJS() as unknown;
    })
    .filter((doc) => doc !== null && doc !== undefined)
    .map((doc) => {
      if (!isObject(doc)) throw new Error(`${file}: a document is not a mapping`);
      return doc;
    });
}

/** Where each workload kind keeps its pod template (independent of the CLI's own table). */
const POD_TEMPLATE_PATHS: Record<string, readonly string[]> = {
  Pod: [],
  Deployment: ["spec", "template"],
  StatefulSet: ["spec", "template"],
  DaemonSet: ["spec", "template"],
  ReplicaSet: ["spec", "template"],
  Job: ["spec", "template"],
  CronJob: ["spec", "jobTemplate", "spec", "template"],
};

function at(root: unknown, path: readonly string[]): unknown {
  let node = root;
  for (const key of path) node = isObject(node) ? node[key] : undefined;
  return node;
}

function podTemplate(doc: Json): Json | undefined {
  const path = typeof doc.kind === "string" ? POD_TEMPLATE_PATHS[doc.kind] : undefined;
  if (path === undefined) return undefined;
  const template = at(doc, path);
  return isObject(template) ? template : undefined;
}

function annotationsOf(template: Json): Record<string, string> {
  const annotations = at(template, ["metadata", "annotations"]);
  return isObject(annotations) ? (annotations as Record<string, string>) : {};
}

interface Container {
  name: string;
  restartPolicy?: string;
  env?: { name: string; value?: string }[];
}

function initContainersOf(template: Json): Container[] {
  const list = at(template, ["spec", "initContainers"]);
  return Array.isArray(list) ? (list as Container[]) : [];
}

function runDso(file: string) {
  const result = spawnSync(process.execPath, [DSO_CLI, "inject", "-f", join(EXAMPLES, file)], {
    encoding: "utf8",
    timeout: 15_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("examples layout", () => {
  it("finds the examples and the CLI build", () => {
    expect(exampleDirs.length).toBeGreaterThanOrEqual(8);
    expect(manifestFiles.length).toBeGreaterThan(0);
    expect(agentConfigFiles.length).toBeGreaterThan(0);
    // `npm test` builds first (tsc -b); running this file alone needs `npx tsc -b` once.
    expect(existsSync(join(ROOT, "packages/cli/dist/main.js")), "run `npx tsc -b` first").toBe(
      true,
    );
  });

  it.each(exampleDirs)("%s has a README.md naming every file beside it", (dir) => {
    const readmePath = join(EXAMPLES, dir, "README.md");
    expect(existsSync(readmePath), `examples/${dir}/README.md`).toBe(true);
    const readme = readFileSync(readmePath, "utf8");
    const missing = filesUnder(join(EXAMPLES, dir))
      .filter((f) => f !== "README.md")
      .filter((f) => !readme.includes(f));
    expect(missing, `files of examples/${dir} the README does not name`).toEqual([]);
  });

  it.each(allFiles.filter((f) => f.endsWith(".sh")))("%s is valid, executable bash", (file) => {
    const path = join(EXAMPLES, file);
    expect(statSync(path).mode & 0o111, `${file} is not executable`).not.toBe(0);
    const check = spawnSync("bash", ["-n", path], { encoding: "utf8" });
    expect(check.stderr).toBe("");
    expect(check.status).toBe(0);
  });
});

describe.each(manifestFiles)("Kubernetes manifest %s", (file) => {
  it("is admitted by `dso inject`, and every annotated workload gets the agent", () => {
    const input = documentsOf(readFileSync(join(EXAMPLES, file), "utf8"), file);
    for (const doc of input) {
      expect(typeof doc.apiVersion, `${file}: a document without apiVersion`).toBe("string");
      expect(typeof doc.kind, `${file}: a document without kind`).toBe("string");
    }

    const run = runDso(file);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    const output = documentsOf(run.stdout, `dso inject -f ${file}`);
    expect(output.map((d) => d.kind)).toEqual(input.map((d) => d.kind));

    input.forEach((doc, i) => {
      const before = podTemplate(doc);
      if (before?.metadata === undefined) return;
      const annotations = annotationsOf(before);
      if (annotations["dso.io/inject"] !== "true") return;
      const name = `${String(doc.kind)}/${String(at(doc, ["metadata", "name"]))}`;
      const after = podTemplate(output[i] ?? {});
      expect(after, name).toBeDefined();
      if (after === undefined) return;
      expect(annotationsOf(after)["dso.io/injected"], name).toBe("true");

      const agents = initContainersOf(after).filter((c) => c.name.startsWith("dso-agent"));
      const mode = annotations["dso.io/mode"] ?? "init-and-sidecar";
      const expected = {
        "init-and-sidecar": ["dso-agent-init", "dso-agent"],
        "init-only": ["dso-agent-init"],
        "sidecar-only": ["dso-agent"],
      }[mode];
      expect(
        agents.map((c) => c.name),
        name,
      ).toEqual(expected);
      // The sidecar is native, so Jobs complete and the app starts after the files exist.
      const sidecar = agents.find((c) => c.name === "dso-agent");
      if (sidecar !== undefined) expect(sidecar.restartPolicy, name).toBe("Always");

      for (const agent of agents) {
        const config = agent.env?.find((e) => e.name === AGENT_CONFIG_ENV)?.value;
        const parsed = parseAgentConfig(JSON.parse(config ?? "null"));
        expect(parsed.ok ? [] : parsed.problems, `${name} ${agent.name}`).toEqual([]);
      }
    });
  });
});

describe("every Kubernetes example injects something", () => {
  const k8sDirs = [...new Set(manifestFiles.map((f) => f.split("/")[0] ?? ""))];
  it.each(k8sDirs)("%s", (dir) => {
    const annotated = manifestFiles
      .filter((f) => f.startsWith(`${dir}/`))
      .flatMap((f) => documentsOf(readFileSync(join(EXAMPLES, f), "utf8"), f))
      .map(podTemplate)
      .filter((t) => t !== undefined && annotationsOf(t)["dso.io/inject"] === "true");
    expect(annotated.length).toBeGreaterThan(0);
  });
});

describe.each(beforeFiles)("migration 'before' file %s", (file) => {
  it("is not a DSO manifest and has an 'after' beside it", () => {
    const text = readFileSync(join(EXAMPLES, file), "utf8");
    documentsOf(text, file);
    expect(text).not.toContain("dso.io/");
    const siblings = readdirSync(join(EXAMPLES, dirname(file)));
    expect(siblings.filter((f) => f.startsWith("after-")).length).toBeGreaterThan(0);
  });
});

describe.each(agentConfigFiles)("AgentConfig %s", (file) => {
  it("passes parseAgentConfig as the agent reads it (YAML)", () => {
    const parsed = parseAgentConfig(parse(readFileSync(join(EXAMPLES, file), "utf8")));
    expect(parsed.ok ? [] : parsed.problems).toEqual([]);
  });
});

describe.each(composeFiles)("Docker Compose file %s", (file) => {
  it("runs the agent image as an init service (render) and a sidecar on its AgentConfig", () => {
    // Compose resolves YAML merge keys (`<<: *dso-agent`), so the test does too.
    const compose = parse(readFileSync(join(EXAMPLES, file), "utf8"), { merge: true }) as Json;
    const services = isObject(compose.services) ? compose.services : {};
    const agentServices = Object.entries(services).filter(
      ([, service]) => isObject(service) && String(service.image).includes("/dso-agent:"),
    );
    const modes = agentServices.map(([, service]) => at(service, ["command"]) as string[]);
    expect(modes.map((command) => command[0]).sort()).toEqual(["render", "sidecar"]);

    for (const [name, service] of agentServices) {
      const command = at(service, ["command"]) as string[];
      const configPath = command[command.indexOf("--config") + 1];
      const volumes = (at(service, ["volumes"]) ?? []) as string[];
      const mount = volumes.find((v) => v.split(":")[1] === configPath);
      expect(mount, `${name} mounts its --config file`).toBeDefined();
      const source = join(EXAMPLES, dirname(file), mount?.split(":")[0] ?? "");
      expect(existsSync(source), `${name}: ${relative(EXAMPLES, source)} exists`).toBe(true);
      expect(isAgentConfigFile(source)).toBe(true);
      expect(at(service, ["read_only"]), name).toBe(true);
    }

    // The sidecar's health check runs Node.js in the distroless image: a list of strings whose
    // script compiles (a YAML plain scalar with ": " in it would have become a mapping).
    const sidecar = agentServices.find(
      ([, s]) => (at(s, ["command"]) as string[])[0] === "sidecar",
    );
    const check = at(sidecar?.[1], ["healthcheck", "test"]);
    expect(Array.isArray(check) && check.every((part) => typeof part === "string")).toBe(true);
    const [kind, node, flag, script] = check as string[];
    expect([kind, node, flag]).toEqual(["CMD", "/nodejs/bin/node", "-e"]);
    expect(() => new Script(script ?? "")).not.toThrow();
    expect(script).toContain("127.0.0.1:8099/healthz");

    // The application waits for the init service to have written the files.
    const app = Object.entries(services).find(([name]) => name === "app")?.[1];
    const initName = agentServices.find(
      ([, s]) => (at(s, ["command"]) as string[])[0] === "render",
    )?.[0];
    expect(at(app, ["depends_on", initName ?? "", "condition"])).toBe(
      "service_completed_successfully",
    );
  });
});

/** The `dso.io/secret-*` annotations of the first annotated workload of an example file. */
function secretAnnotations(file: string): Record<string, string> {
  const template = documentsOf(readFileSync(join(EXAMPLES, file), "utf8"), file)
    .map(podTemplate)
    .find((t) => t !== undefined && annotationsOf(t)["dso.io/inject"] === "true");
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(template ? annotationsOf(template) : {})) {
    if (key.startsWith("dso.io/secret-")) out[key.slice("dso.io/secret-".length)] = value;
  }
  return out;
}

describe("migration examples map every 'before' secret to an 'after' annotation", () => {
  it("App Service: each Key Vault reference is used unchanged, the file named after the setting", () => {
    const settings = JSON.parse(
      readFileSync(join(EXAMPLES, "migrate-app-service/before-appsettings.json"), "utf8"),
    ) as { name: string; value: string }[];
    const references = settings.filter((s) => s.value.startsWith("@Microsoft.KeyVault("));
    expect(references.length).toBeGreaterThan(0);
    const after = secretAnnotations("migrate-app-service/after-deployment.yaml");
    expect(after).toEqual(Object.fromEntries(references.map((s) => [s.name, s.value])));
  });

  it("CSI driver: each SecretProviderClass object becomes a file of the same name", () => {
    const file = "migrate-csi-driver/before-secretproviderclass.yaml";
    const spc = documentsOf(readFileSync(join(EXAMPLES, file), "utf8"), file).find(
      (d) => d.kind === "SecretProviderClass",
    );
    const objects = parse(String(at(spc, ["spec", "parameters", "objects"]))) as {
      array: string[];
    };
    const entries = objects.array.map(
      (o) => parse(o) as { objectName: string; objectAlias?: string; objectVersion?: string },
    );
    expect(entries.length).toBeGreaterThan(0);
    const after = secretAnnotations("migrate-csi-driver/after-deployment.yaml");
    expect(Object.keys(after).sort()).toEqual(
      entries.map((e) => e.objectAlias ?? e.objectName).sort(),
    );
    for (const e of entries) {
      const reference = after[e.objectAlias ?? e.objectName] ?? "";
      expect(reference.replace(/^cert\//, "").split("/")[0]).toBe(e.objectName);
      if (e.objectVersion !== undefined)
        expect(reference.endsWith(`/${e.objectVersion}`)).toBe(true);
    }
  });
});
