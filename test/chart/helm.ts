/**
 * Runs the `helm` binary against charts/dso for the chart tests.
 *
 * helm must come from the Go module proxy (`go install helm.sh/helm/v3/cmd/helm@v3.19.x`), never a
 * downloaded release binary, so the tests never fetch it: they find it, or fail saying how to build it.
 */

import { execFile } from "node:child_process";
import {
  accessSync,
  constants,
  cpSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { homedir, tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const CHART_DIR = join(REPO_ROOT, "charts/dso");
/** The chart needs Kubernetes 1.30+; `helm template` would otherwise assume 1.20. */
export const KUBE_VERSION = "1.32.0";

const BUILD_HINT =
  "Build it from the Go module proxy (never download a release binary): " +
  "GOTOOLCHAIN=local GOBIN=$HOME/.cache/dso-e2e/helm-v3.19.5/bin go install helm.sh/helm/v3/cmd/helm@v3.19.5";

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * `helm` binaries under `<cacheDir>/*` and `<cacheDir>/*\/bin`: `helm-<version>` directories first,
 * newest first. `*.partial` directories are builds still in progress (test/e2e/provision.sh).
 */
function cachedHelms(cacheDir: string): string[] {
  let dirs: string[];
  try {
    dirs = readdirSync(cacheDir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && !entry.name.endsWith(".partial"))
      .map((entry) => entry.name);
  } catch {
    return [];
  }
  const rank = (dir: string): number => (dir.startsWith("helm-") ? 0 : 1);
  dirs.sort((a, b) => rank(a) - rank(b) || b.localeCompare(a, "en", { numeric: true }));
  return dirs
    .flatMap((dir) => [join(cacheDir, dir, "bin", "helm"), join(cacheDir, dir, "helm")])
    .filter(isExecutable);
}

/**
 * Where helm is: `$DSO_HELM`, else `helm` on `$PATH`, else the newest build under
 * `~/.cache/dso-e2e/`. Throws, naming every place looked at, when there is none.
 */
export function locateHelm(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  const fromEnv = env["DSO_HELM"];
  if (fromEnv !== undefined && fromEnv !== "") {
    if (!isExecutable(fromEnv)) {
      throw new Error(`DSO_HELM is ${fromEnv}, which is not an executable file. ${BUILD_HINT}`);
    }
    return fromEnv;
  }
  const onPath = (env["PATH"] ?? "")
    .split(delimiter)
    .filter((dir) => dir !== "")
    .map((dir) => join(dir, "helm"))
    .find(isExecutable);
  if (onPath !== undefined) return onPath;
  const cacheDir = join(home, ".cache", "dso-e2e");
  const cached = cachedHelms(cacheDir)[0];
  if (cached !== undefined) return cached;
  throw new Error(
    `helm not found: DSO_HELM is not set, there is no helm on PATH and none under ${cacheDir}/*/. ${BUILD_HINT}`,
  );
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class Helm {
  /** Keeps helm away from the user's repositories, plugins and cache. */
  private readonly home = mkdtempSync(join(tmpdir(), "dso-chart-helm-"));

  constructor(readonly binary: string) {}

  run(args: readonly string[]): Promise<HelmResult> {
    const env = {
      PATH: process.env["PATH"] ?? "",
      HOME: this.home,
      HELM_CACHE_HOME: join(this.home, "cache"),
      HELM_CONFIG_HOME: join(this.home, "config"),
      HELM_DATA_HOME: join(this.home, "data"),
      KUBECONFIG: join(this.home, "no-kubeconfig"),
    };
    return new Promise((done) => {
      execFile(this.binary, args, { env, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
        done({ code, stdout, stderr });
      });
    });
  }

  /** Writes values as JSON (a YAML subset) so their types reach helm exactly as written. */
  valuesFile(values: unknown): string {
    const dir = mkdtempSync(join(this.home, "values-"));
    const file = join(dir, "values.json");
    writeFileSync(file, JSON.stringify(values));
    return file;
  }

  /** `helm template` of charts/dso (or another chart directory); resolves even when helm fails. */
  template(values: unknown, options: TemplateOptions = {}): Promise<HelmResult> {
    return this.run([
      "template",
      options.release ?? "dso",
      options.chartDir ?? CHART_DIR,
      "--namespace",
      options.namespace ?? "dso-system",
      "--kube-version",
      KUBE_VERSION,
      "--values",
      this.valuesFile(values),
    ]);
  }

  /** Rendered manifests, parsed; throws with helm's stderr when rendering fails. */
  async render(values: unknown, options: TemplateOptions = {}): Promise<Manifest[]> {
    const result = await this.template(values, options);
    if (result.code !== 0) {
      throw new Error(`helm template failed (exit ${result.code}):\n${result.stderr}`);
    }
    return parseManifests(result.stdout);
  }

  /**
   * The string a template expression renders to, for helpers no manifest shows as is: renders a
   * copy of the chart with one extra template holding `{{ <expression> | toJson }}`.
   */
  async renderExpression(
    values: unknown,
    expression: string,
    options: TemplateOptions = {},
  ): Promise<string> {
    const chartDir = join(mkdtempSync(join(this.home, "chart-")), "dso");
    cpSync(CHART_DIR, chartDir, { recursive: true });
    writeFileSync(
      join(chartDir, "templates", "zz-test-expression.yaml"),
      [
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: test-expression",
        "data:",
        `  value: {{ ${expression} | toJson }}`,
        "",
      ].join("\n"),
    );
    const manifests = await this.render(values, { ...options, chartDir });
    const holder = manifests.find((m) => m.metadata.name === "test-expression");
    const value = (holder?.["data"] as Record<string, string> | undefined)?.["value"];
    if (value === undefined) throw new Error("the test expression was not rendered");
    return value;
  }

  /** NOTES.txt as the operator would see it after `helm install` (helm template never prints it). */
  notes(values: unknown, options: TemplateOptions = {}): Promise<string> {
    return this.renderExpression(values, 'include "dso.notes" .', options);
  }

  dispose(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}

export interface TemplateOptions {
  release?: string;
  namespace?: string;
  chartDir?: string;
}

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [field: string]: unknown;
}

export function parseManifests(text: string): Manifest[] {
  const manifests: Manifest[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0)
      throw new Error(`rendered YAML is invalid: ${doc.errors.join("; ")}`);
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) manifests.push(value as Manifest);
  }
  return manifests;
}

export function parseYaml(text: string): unknown {
  return parse(text) as unknown;
}
