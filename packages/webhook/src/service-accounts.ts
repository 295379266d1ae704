/**
 * Service-account annotations for the review path (the Azure workload-identity client-id
 * fallback), served from an informer's in-memory cache: a review never waits on the API server.
 *
 * Only runs when the policy sets `readServiceAccounts: true`; it then needs RBAC to list and
 * watch serviceaccounts cluster-wide.
 */
import {
  CoreV1Api,
  makeInformer,
  type Informer,
  type KubeConfig,
  type ObjectCache,
  type V1ServiceAccount,
} from "@kubernetes/client-node";
import type { Logger } from "./logger.js";

/** Synchronous lookup used by the review path. */
export interface ServiceAccountLookup {
  annotations(namespace: string, name: string): Readonly<Record<string, string>> | undefined;
}

export interface ServiceAccountDirectory extends ServiceAccountLookup {
  /** True once the first full list has arrived. */
  synced(): boolean;
  stop(): Promise<void>;
}

export interface ServiceAccountInformerOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  /** Delay before restarting after a failed list or watch. */
  retryDelayMs?: number;
}

/** Starts a list/watch over all ServiceAccounts; returns at once, `synced()` tells when it is usable. */
export function startServiceAccountInformer(
  options: ServiceAccountInformerOptions,
): ServiceAccountDirectory {
  const { kubeConfig, logger } = options;
  const retryDelayMs = options.retryDelayMs ?? 5000;
  const api = kubeConfig.makeApiClient(CoreV1Api);
  let isSynced = false;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;

  const informer: Informer<V1ServiceAccount> & ObjectCache<V1ServiceAccount> = makeInformer(
    kubeConfig,
    "/api/v1/serviceaccounts",
    async () => {
      const list = await api.listServiceAccountForAllNamespaces();
      // The informer stores the items right after this resolves, before any other I/O runs.
      if (!isSynced) logger.info({ count: list.items.length }, "service accounts synced");
      isSynced = true;
      return list;
    },
  );

  const start = (): void => {
    informer.start().catch((error: unknown) => {
      onError(error);
    });
  };
  const onError = (error: unknown): void => {
    if (stopped) return;
    logger.warn(
      { err: error instanceof Error ? error.message : String(error), retryInMs: retryDelayMs },
      "service account watch failed; retrying",
    );
    if (retry !== undefined) clearTimeout(retry);
    retry = setTimeout(start, retryDelayMs);
    retry.unref();
  };
  informer.on("error", onError);
  start();

  return {
    annotations(namespace, name) {
      return informer.get(name, namespace)?.metadata?.annotations;
    },
    synced: () => isSynced,
    async stop() {
      stopped = true;
      if (retry !== undefined) clearTimeout(retry);
      await informer.stop();
    },
  };
}
