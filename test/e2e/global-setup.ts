// Global setup of the e2e suite: the provisioned binaries must all be there (the suite fails,
// never skips, when a server cannot be started), and the webhook/agent bundles are rebuilt so the
// tests run exactly the files the images run as `node /app/main.mjs`.
import { execFileSync } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Binaries every e2e run needs. (Lowkey Vault is optional: not obtainable here.) */
const REQUIRED = [
  "DSO_E2E_ETCD",
  "DSO_E2E_KUBE_APISERVER",
  "DSO_E2E_KUBE_CONTROLLER_MANAGER",
  "DSO_E2E_KUBECTL",
  "DSO_E2E_HELM",
  "DSO_E2E_BAO",
  "DSO_E2E_OPENSSL",
] as const;

/**
 * The `export NAME='value'` lines of `provision.sh --env`, as a map. Values the caller already
 * has in its environment win, so a developer can point one binary elsewhere.
 */
export function loadProvisionedEnv(): Record<string, string> {
  const out = execFileSync("bash", [join(repoRoot, "test/e2e/provision.sh"), "--env"], {
    encoding: "utf8",
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const env: Record<string, string> = {};
  for (const line of out.split("\n")) {
    const m = /^export ([A-Z0-9_]+)='((?:[^']|'\\'')*)'/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) env[m[1]] = m[2].replaceAll("'\\''", "'");
  }
  for (const [k, v] of Object.entries(process.env))
    if (k.startsWith("DSO_E2E_") && v !== undefined) env[k] = v;
  return env;
}

export function missingBinaries(env: Record<string, string | undefined>): string[] {
  const missing: string[] = [];
  for (const name of REQUIRED) {
    const path = env[name];
    if (path === undefined || path === "") {
      missing.push(`${name} is not set`);
      continue;
    }
    if (
      name === "DSO_E2E_KUBE_APISERVER" ||
      name === "DSO_E2E_ETCD" ||
      name === "DSO_E2E_KUBE_CONTROLLER_MANAGER"
    ) {
      // Not needed when the suite targets an existing cluster.
      if ((env.DSO_E2E_KUBECONFIG ?? "") !== "") continue;
    }
    try {
      accessSync(path, constants.X_OK);
    } catch {
      missing.push(`${name}=${path} is not an executable file`);
    }
  }
  return missing;
}

/**
 * Where this run's copy of the bundles is (`<dir>/webhook/main.mjs`, `<dir>/agent/main.mjs`).
 * Why a copy: scripts/bundle.mjs empties build/ first, and another run (or a developer) may
 * rebuild while this run's webhook still lazily imports its code-split chunks.
 */
export function bundleDir(): string {
  const dir = process.env.DSO_E2E_BUILD_DIR;
  return dir === undefined || dir === "" ? join(repoRoot, "build") : dir;
}

export default function setup(): (() => void) | undefined {
  const env = loadProvisionedEnv();
  Object.assign(process.env, env);
  const missing = missingBinaries(env);
  if (missing.length > 0) {
    throw new Error(
      `e2e: required servers are missing (run \`bash test/e2e/provision.sh\`, or \`npm run test:e2e\` which does):\n  ${missing.join("\n  ")}`,
    );
  }
  if (process.env.DSO_E2E_SKIP_BUNDLE === "1") return undefined;
  const started = Date.now();
  const snapshot = mkdtempSync(join(tmpdir(), "dso-e2e-build-"));
  // flock around build and copy: concurrent runs in one working tree must not empty build/
  // between another run's build and its copy.
  execFileSync(
    "flock",
    [
      join(tmpdir(), "dso-e2e-bundle.lock"),
      "sh",
      "-c",
      '"$0" scripts/bundle.mjs && cp -R build/webhook build/agent "$1"/',
      process.execPath,
      snapshot,
    ],
    { cwd: repoRoot, stdio: "inherit" },
  );
  process.env.DSO_E2E_BUILD_DIR = snapshot;
  console.log(`e2e: bundles built in ${Date.now() - started} ms, copied to ${snapshot}`);
  const remove = (): void => {
    rmSync(snapshot, { recursive: true, force: true });
  };
  // Also when the run is interrupted before the teardown runs.
  process.once("exit", remove);
  return remove;
}
