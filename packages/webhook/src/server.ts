/**
 * Wires configuration into a listening HTTPS webhook: policy, certificate (files or
 * self-signed), service-account informer, reloads, and graceful shutdown.
 *
 * The Kubernetes client is loaded only when something needs it (self-signed mode, service
 * accounts): it costs ~80 MB and ~0.3 s of start-up that the common cert-manager set-up never uses.
 */
import type { Policy } from "@dso/core";
import type { KubeConfig } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { buildApp, type HttpsApp } from "./app.js";
import type { WebhookConfig } from "./config.js";
import type { FileWatch } from "./file-watch.js";
import type { Logger } from "./logger.js";
import { createMetrics, type WebhookMetrics } from "./metrics.js";
import { PolicyStore } from "./policy-store.js";
import type { SelfSignedKubeApi, ServingCertificate } from "./self-signed.js";
import type { ServiceAccountDirectory } from "./service-accounts.js";
import {
  certificateFingerprint,
  certificateNotAfter,
  readPairFromFiles,
  secureContextOptions,
  watchCertificateFiles,
  type TlsPair,
} from "./tls.js";

export interface ServerDeps {
  logger: Logger;
  metrics?: WebhookMetrics;
  /** Kubernetes access for self-signed mode and the service-account informer (default: in-cluster, else ~/.kube/config). */
  kubeConfig?: () => KubeConfig;
  /** Overrides the Kubernetes API used by the self-signed bootstrap. */
  selfSignedApi?: SelfSignedKubeApi;
  /** Quiet period before reacting to file events, in milliseconds. */
  debounceMs?: number;
  /** Delay before retrying a failed service-account list/watch, in milliseconds. */
  serviceAccountRetryMs?: number;
}

export interface RunningServer {
  app: HttpsApp;
  /** The port actually bound (useful with port 0). */
  port: number;
  metrics: WebhookMetrics;
  policy: PolicyStore;
  /** Stops accepting, lets in-flight reviews finish (bounded by the shutdown timeout), releases watches. */
  shutdown(): Promise<void>;
}

/** How often self-signed mode re-reads the shared Secret (renewal, another replica's rotation). */
const SELF_SIGNED_CHECK_MS = 60 * 60 * 1000;
const CA_BUNDLE_RETRY_MS = 10_000;

export async function startServer(config: WebhookConfig, deps: ServerDeps): Promise<RunningServer> {
  const { logger } = deps;
  const metrics = deps.metrics ?? createMetrics(new Registry(), { processMetrics: true });
  const timers: NodeJS.Timeout[] = [];
  const watches: FileWatch[] = [];
  let shuttingDown = false;

  let kubeConfig: KubeConfig | undefined;
  const kube = async (): Promise<KubeConfig> => {
    if (kubeConfig === undefined) {
      if (deps.kubeConfig !== undefined) {
        kubeConfig = deps.kubeConfig();
      } else {
        const client = await import("@kubernetes/client-node");
        kubeConfig = new client.KubeConfig();
        kubeConfig.loadFromDefault();
      }
    }
    return kubeConfig;
  };

  // Service accounts are read only while the policy asks for it; a reload can switch it.
  let serviceAccounts: ServiceAccountDirectory | undefined;
  let wantServiceAccounts = false;
  const stillWanted = (): boolean =>
    wantServiceAccounts && serviceAccounts === undefined && !shuttingDown;
  const syncServiceAccounts = async (policy: Policy): Promise<void> => {
    wantServiceAccounts = policy.readServiceAccounts;
    if (wantServiceAccounts && serviceAccounts === undefined) {
      const { startServiceAccountInformer } = await import("./service-accounts.js");
      const kc = await kube();
      // Re-checked: a reload or a shutdown may have happened while loading.
      if (stillWanted()) {
        serviceAccounts = startServiceAccountInformer({
          kubeConfig: kc,
          logger,
          ...(deps.serviceAccountRetryMs === undefined
            ? {}
            : { retryDelayMs: deps.serviceAccountRetryMs }),
        });
      }
    } else if (!wantServiceAccounts && serviceAccounts !== undefined) {
      const stopping = serviceAccounts;
      serviceAccounts = undefined;
      await stopping.stop();
    }
  };
  const onPolicy = (policy: Policy): void => {
    syncServiceAccounts(policy).catch((error: unknown) => {
      logger.error({ err: String(error) }, "cannot start the service account informer");
    });
  };

  const policy = await PolicyStore.open({
    ...(config.policyFile === undefined ? {} : { file: config.policyFile }),
    logger,
    metrics,
    pollIntervalMs: config.watchPollIntervalMs,
    ...(deps.debounceMs === undefined ? {} : { debounceMs: deps.debounceMs }),
    onChange: onPolicy,
  });
  watches.push(policy);
  await syncServiceAccounts(policy.current());

  let pair: TlsPair;
  // Filled in once the server exists; certificate changes before that only update `pair`.
  const listening: { app?: HttpsApp } = {};
  const serve = (next: TlsPair): void => {
    listening.app?.server.setSecureContext(secureContextOptions(next));
    pair = next;
  };

  if (config.certMode === "files") {
    pair = await readPairFromFiles(config.tlsCertFile ?? "", config.tlsKeyFile ?? "");
  } else {
    const settings = config.selfSigned;
    if (settings === undefined) throw new Error("self-signed mode without its settings");
    const selfSigned = await import("./self-signed.js");
    const api = deps.selfSignedApi ?? selfSigned.kubeSelfSignedApi(await kube());
    const options = {
      namespace: settings.namespace,
      secretName: settings.secretName,
      serviceName: settings.serviceName,
      logger,
    };
    const issued = await selfSigned.ensureServingCertificate(api, options);
    pair = issued.pair;
    let caBundle = issued.caBundle;
    // The configuration may not exist yet (installed after the Deployment) or RBAC may lag: keep
    // trying in the background. The API server cannot call us before the caBundle is set anyway.
    const publish = (): void => {
      selfSigned
        .publishCaBundle(api, settings.webhookConfigName, caBundle, logger)
        .catch((error: unknown) => {
          logger.error(
            { webhookConfiguration: settings.webhookConfigName, err: String(error) },
            "could not set caBundle; retrying",
          );
          if (!shuttingDown) timers.push(setTimeout(publish, CA_BUNDLE_RETRY_MS).unref());
        });
    };
    publish();
    const recheck = (next: ServingCertificate): void => {
      if (next.pair.cert !== pair.cert) {
        serve(next.pair);
        metrics.certificateReloads.inc({ result: "success" });
        logger.info(
          { fingerprint: certificateFingerprint(next.pair.cert) },
          "certificate reloaded",
        );
      }
      if (next.caBundle !== caBundle) {
        caBundle = next.caBundle;
        publish();
      }
    };
    const check = setInterval(() => {
      selfSigned
        .ensureServingCertificate(api, options)
        .then(recheck)
        .catch((error: unknown) => {
          metrics.certificateReloads.inc({ result: "failure" });
          logger.error({ err: String(error) }, "self-signed certificate check failed");
        });
    }, SELF_SIGNED_CHECK_MS);
    timers.push(check.unref());
  }

  const running = buildApp({
    tls: pair,
    logger,
    policy,
    metrics,
    serviceAccounts: () => serviceAccounts,
    readiness: () => {
      const reasons: string[] = [];
      if (shuttingDown) reasons.push("shutting down");
      if (wantServiceAccounts && serviceAccounts?.synced() !== true) {
        reasons.push("service accounts not synced yet");
      }
      return reasons;
    },
  });
  listening.app = running;

  await running.listen({ port: config.port, host: config.host });
  const address = running.server.address();
  const port = typeof address === "object" && address !== null ? address.port : config.port;
  logger.info(
    {
      host: config.host,
      port,
      certMode: config.certMode,
      fingerprint: certificateFingerprint(pair.cert),
      notAfter: certificateNotAfter(pair.cert).toISOString(),
      policyFile: config.policyFile ?? null,
    },
    "dso-webhook listening",
  );

  if (config.certMode === "files") {
    watches.push(
      watchCertificateFiles({
        certFile: config.tlsCertFile ?? "",
        keyFile: config.tlsKeyFile ?? "",
        initial: pair,
        apply: serve,
        logger,
        metrics,
        pollIntervalMs: config.watchPollIntervalMs,
        ...(deps.debounceMs === undefined ? {} : { debounceMs: deps.debounceMs }),
      }),
    );
  }

  let closing: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    closing ??= (async () => {
      shuttingDown = true;
      logger.info(
        { timeoutMs: config.shutdownTimeoutMs },
        "shutting down: finishing in-flight reviews",
      );
      for (const t of timers) clearTimeout(t);
      for (const w of watches) w.close();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => {
          resolve("timeout");
        }, config.shutdownTimeoutMs);
      });
      const result = await Promise.race([running.close().then(() => "closed" as const), timedOut]);
      clearTimeout(timer);
      if (result === "timeout") {
        logger.warn("shutdown timeout reached; closing remaining connections");
        running.server.closeAllConnections();
      }
      await serviceAccounts?.stop();
      logger.info("stopped");
    })();
    return closing;
  };

  return { app: running, port, metrics, policy, shutdown };
}
