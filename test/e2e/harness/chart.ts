// The Helm chart (charts/dso) rendered by the real helm, and the pieces of it that make sense
// without a webhook Deployment (the webhook runs as a local process): the
// MutatingWebhookConfiguration (URL client config), the ValidatingAdmissionPolicy and its binding,
// and the policy from the ConfigMap, written to a file for `--policy`.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";
import type { Cluster } from "./cluster.js";
import { repoRoot } from "../global-setup.js";
import { makeTempDir, run } from "./processes.js";

export const CHART_DIR = join(repoRoot, "charts/dso");
export const KUBE_VERSION = "1.34.4";

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export interface RenderOptions {
  release?: string;
  namespace?: string;
  /** `--set` values, e.g. {"webhook.url": "https://127.0.0.1:1234/mutate"}. */
  set?: Record<string, string>;
  /** `--set-json` values, e.g. {"policy.namespaces": [{match: ["locked"]}]}. */
  setJson?: Record<string, unknown>;
}

export interface RenderedChart {
  objects: K8sObject[];
  yaml: string;
  /** The only object of this kind; throws when there is none or several. */
  one(kind: string): K8sObject;
  /** The InjectionPolicy YAML from the policy ConfigMap (data["policy.yaml"]). */
  policyYaml(): string;
}

let helmHome: string | undefined;

export async function renderChart(opts: RenderOptions = {}): Promise<RenderedChart> {
  const helm = process.env.DSO_E2E_HELM;
  if (helm === undefined || helm === "")
    throw new Error("DSO_E2E_HELM is not set (run via npm run test:e2e)");
  helmHome ??= makeTempDir("dso-e2e-helm");
  const args = [
    "template",
    opts.release ?? "dso",
    CHART_DIR,
    "--namespace",
    opts.namespace ?? "dso",
    "--kube-version",
    KUBE_VERSION,
  ];
  for (const [k, v] of Object.entries(opts.set ?? {})) args.push("--set", `${k}=${v}`);
  for (const [k, v] of Object.entries(opts.setJson ?? {}))
    args.push("--set-json", `${k}=${JSON.stringify(v)}`);
  const r = await run(helm, args, {
    // Keep helm's cache/config out of the real home.
    env: { PATH: process.env.PATH, HOME: helmHome },
    timeoutMs: 60_000,
  });
  if (r.code !== 0) throw new Error(`helm template failed (${r.code}): ${r.stderr.trim()}`);
  const objects = parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
  return {
    objects,
    yaml: r.stdout,
    one(kind) {
      const found = objects.filter((o) => o.kind === kind);
      if (found.length !== 1)
        throw new Error(`chart: expected one ${kind}, rendered ${found.length}`);
      return found[0] as K8sObject;
    },
    policyYaml() {
      const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name.endsWith("-policy"));
      const data = (cm as { data?: Record<string, string> } | undefined)?.data?.["policy.yaml"];
      if (data === undefined)
        throw new Error("chart: no ConfigMap with data[policy.yaml] rendered");
      return data;
    },
  };
}

/** Kinds applied by applyChart: what works with the webhook running outside the cluster. */
export const ADMISSION_KINDS = [
  "MutatingWebhookConfiguration",
  "ValidatingAdmissionPolicy",
  "ValidatingAdmissionPolicyBinding",
] as const;

/** `kubectl apply` of the chosen rendered objects; returns kubectl's output. */
export async function applyChart(
  cluster: Cluster,
  chart: RenderedChart,
  kinds: readonly string[] = ADMISSION_KINDS,
): Promise<string> {
  const chosen = chart.objects.filter((o) => kinds.includes(o.kind));
  if (chosen.length === 0) throw new Error(`chart: nothing of kinds ${kinds.join(", ")} rendered`);
  return cluster.kubectlOk(["apply", "-f", "-"], {
    input: chosen.map((o) => stringify(o)).join("---\n"),
  });
}

/** Writes the chart's rendered policy to a file for the webhook's --policy. */
export function writePolicyFile(chart: RenderedChart, dir = makeTempDir("dso-e2e-policy")): string {
  const file = join(dir, "policy.yaml");
  writeFileSync(file, chart.policyYaml());
  return file;
}
