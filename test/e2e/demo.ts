// `npm run demo`: the whole product on one machine, with the e2e harness. A control plane
// (etcd, kube-apiserver, kube-controller-manager), OpenBao and the webhook start on loopback; the
// vault-kv example is applied; its injected pod's agent runs as the pod would run it; a secret is
// rotated and the file follows. Everything is stopped and removed at the end (or on Ctrl-C).
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import {
  preparePodVolumes,
  runAgentContainer,
  runToExit,
  startInjection,
  type Pod,
} from "./harness/agent-runner.js";
import { startCluster } from "./harness/cluster.js";
import { startOpenBao } from "./harness/openbao.js";
import { adoptTempDir, teardownAll, waitFor } from "./harness/processes.js";
import setup, { bundleDir, loadProvisionedEnv, repoRoot } from "./global-setup.js";

const started = Date.now();
const REFRESH = "10s";

function step(text: string): void {
  const s = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
  console.log(`\n\x1b[1m[${s}s] ${text}\x1b[0m`);
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}

function showFiles(dir: string): void {
  for (const name of readdirSync(dir).filter((n) => !n.startsWith(".."))) {
    const st = statSync(join(dir, name));
    const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
    console.log(`  ${name}  (mode ${mode}, uid ${st.uid}, gid ${st.gid})`);
    console.log(indent(readFileSync(join(dir, name), "utf8")));
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error(
      "the demo runs the agent in its own mount namespace (unshare -m) to recreate the pod's volumes; run it as root (e.g. in the dev container)",
    );
  }
  step("Loading the provisioned servers and bundling the webhook and agent (scripts/bundle.mjs)");
  Object.assign(process.env, loadProvisionedEnv());
  const dropBundles = setup();
  adoptTempDir(bundleDir());

  try {
    step("Starting etcd, kube-apiserver and kube-controller-manager v1.34 on 127.0.0.1");
    const cluster = await startCluster();
    console.log(`  API server: ${cluster.apiUrl}\n  kubeconfig: ${cluster.kubeconfig}`);

    step("Starting OpenBao (dev mode) and the DSO webhook (node build/webhook/main.mjs)");
    const [bao, stack] = await Promise.all([startOpenBao(), startInjection(cluster)]);
    console.log(`  OpenBao: ${bao.address}\n  webhook: ${stack.webhook.url}`);
    console.log(
      "  The chart's MutatingWebhookConfiguration now sends pods with dso.io/inject to it.",
    );

    step(
      "Vault side: a KV v2 secret, a policy, and a Kubernetes auth role for the app's service account",
    );
    await bao.kv2Put("secret", "orders/db", { username: "orders", password: "first-password" });
    await bao.putPolicy("orders-db", `path "secret/data/orders/db" { capabilities = ["read"] }`);
    await bao.enableKubernetesAuth(cluster);
    await bao.kubernetesRole("orders-api", {
      serviceAccounts: ["orders-api"],
      namespaces: ["orders"],
      policies: ["orders-db"],
      audience: "vault",
    });

    step(
      `kubectl apply -f examples/vault-kv/deployment.yaml (vault-address -> ${bao.address}, refresh -> ${REFRESH})`,
    );
    const example = readFileSync(join(repoRoot, "examples/vault-kv/deployment.yaml"), "utf8")
      .replace(/dso\.io\/vault-address: .*/, `dso.io/vault-address: ${bao.address}`)
      .replace(/dso\.io\/refresh: .*/, `dso.io/refresh: ${REFRESH}`);
    await cluster.kubectlOk(["create", "namespace", "orders"]);
    console.log(indent(await cluster.kubectlOk(["apply", "-f", "-"], { input: example })));

    step(
      "The controller-manager made pods; the API server stored them injected (Pending: there is no kubelet)",
    );
    const pod = await waitFor(
      async () => {
        const list = await cluster.api<{ items: Pod[] }>(
          "GET",
          "/api/v1/namespaces/orders/pods?labelSelector=app.kubernetes.io%2Fname%3Dorders-api",
        );
        return list.items.find((p) => p.metadata.annotations?.["dso.io/injected"] === "true");
      },
      { timeoutMs: 60_000, what: "an injected orders-api pod", processes: cluster.processes },
    );
    console.log(indent(await cluster.kubectlOk(["get", "pods", "-n", "orders", "-o", "wide"])));
    console.log(`\n  What the webhook added to ${pod.metadata.name}:`);
    console.log(
      indent(
        stringify({
          initContainers: pod.spec.initContainers?.map((c) => ({
            name: c.name,
            image: c.image,
            args: c.args,
            restartPolicy: c.restartPolicy,
            volumeMounts: c.volumeMounts,
          })),
          appVolumeMounts: pod.spec.containers[0]?.volumeMounts,
          volumes: pod.spec.volumes?.filter((v) => v.name.startsWith("dso-")),
        }),
      ),
    );

    step(
      "Running dso-agent-init exactly as stored (args, env, user, volumes) with a TokenRequest token",
    );
    const vols = await preparePodVolumes(cluster, pod);
    const init = await runToExit(vols, "dso-agent-init", 60_000);
    if (init.exit.code !== 0) throw new Error(`dso-agent-init failed:\n${init.logs}`);
    console.log(
      `  exited 0 after ${init.ms} ms. The app would see in /var/run/secrets/dso (memory only):`,
    );
    showFiles(vols.dir("dso-secrets"));

    step(
      `Starting the dso-agent sidecar, then rotating the password in OpenBao (refresh ${REFRESH})`,
    );
    const sidecar = runAgentContainer(vols, "dso-agent");
    await bao.kv2Put("secret", "orders/db", { username: "orders", password: "rotated-password" });
    const file = join(vols.dir("dso-secrets"), "password");
    await waitFor(() => readFileSync(file, "utf8") === "rotated-password", {
      timeoutMs: 30_000,
      what: "the password file to change after the rotation",
      processes: [sidecar],
    });
    console.log("  The files changed in place (atomic swap), without restarting anything:");
    showFiles(vols.dir("dso-secrets"));

    step("Done: stopping everything and removing temp dirs");
  } finally {
    await teardownAll();
    dropBundles?.();
  }
  console.log(`\nDemo finished in ${((Date.now() - started) / 1000).toFixed(0)} s.`);
}

// Exit explicitly: a harness timer (e.g. an agent's exit deadline) must not hold the demo open.
main().then(
  () => process.exit(0),
  async (err: unknown) => {
    console.error(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
    await teardownAll();
    process.exit(1);
  },
);
