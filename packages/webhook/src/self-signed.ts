/**
 * Self-signed bootstrap, for clusters without cert-manager: the webhook makes its own CA and
 * serving certificate, keeps them in a Secret so every replica serves the same one, and writes
 * the CA into the MutatingWebhookConfiguration's caBundle so the API server trusts it.
 *
 * The CA's private key is thrown away after signing: nothing can mint further certificates from
 * the Secret. Renewal makes a new CA and certificate; the caBundle then carries the new CA and the
 * previous one (while valid), so replicas still serving the old certificate keep being trusted
 * until they pick up the new one.
 *
 * All Kubernetes I/O goes through `SelfSignedKubeApi`; `kubeSelfSignedApi` is the real one.
 */
import { X509Certificate } from "node:crypto";
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoreV1Api,
  PatchStrategy,
  V1Secret,
  setHeaderOptions,
  type KubeConfig,
} from "@kubernetes/client-node";
import type { Operation } from "fast-json-patch";
import { generate } from "selfsigned";
import type { Logger } from "./logger.js";
import { checkPair, type TlsPair } from "./tls.js";

const DAY_MS = 24 * 60 * 60 * 1000;
/** Renew when the serving certificate has less than this left. */
export const RENEW_BEFORE_MS = 30 * DAY_MS;
export const VALIDITY_MS = 365 * DAY_MS;

/** Keys of the Secret (type kubernetes.io/tls, so tools recognise it). */
export const SECRET_KEYS = { cert: "tls.crt", key: "tls.key", ca: "ca.crt" } as const;

/**
 * The fields of a Secret this module reads and writes. Plain data (client-node's model classes
 * are only type declarations to the API machinery, which serializes plain objects).
 */
export interface SecretObject {
  apiVersion?: string;
  kind?: string;
  type?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
  };
  data?: Record<string, string>;
}

/**
 * The fields of a MutatingWebhookConfiguration this module reads and writes; the others (rules,
 * selectors, service) are carried through unchanged.
 */
export interface WebhookConfigurationObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; resourceVersion?: string };
  webhooks?: { name: string; clientConfig: { caBundle?: string } }[];
}

export interface SelfSignedKubeApi {
  readSecret(namespace: string, name: string): Promise<SecretObject | undefined>;
  createSecret(namespace: string, secret: SecretObject): Promise<"created" | "exists">;
  /** Optimistic update: `conflict` when metadata.resourceVersion is stale. */
  replaceSecret(namespace: string, secret: SecretObject): Promise<"replaced" | "conflict">;
  readWebhookConfiguration(name: string): Promise<WebhookConfigurationObject>;
  /**
   * Applies a JSON patch (RBAC verb `patch`). `conflict` when one of its `test` operations failed
   * because the configuration changed since it was read.
   */
  patchWebhookConfiguration(name: string, patch: Operation[]): Promise<"patched" | "conflict">;
}

export interface ServingCertificate {
  pair: TlsPair;
  /** PEM CA certificates the API server must trust (newest first). */
  caBundle: string;
}

export interface SelfSignedOptions {
  namespace: string;
  secretName: string;
  serviceName: string;
  now?: () => Date;
  logger: Logger;
}

export class SelfSignedError extends Error {
  override readonly name = "SelfSignedError";
  constructor(
    readonly code: "SELF_SIGNED_CONFLICT" | "WEBHOOK_CONFIG_CONFLICT",
    message: string,
  ) {
    super(message);
  }
}

export function serviceDnsNames(serviceName: string, namespace: string): string[] {
  return [
    `${serviceName}.${namespace}.svc`,
    `${serviceName}.${namespace}.svc.cluster.local`,
    `${serviceName}.${namespace}`,
    serviceName,
  ];
}

/** Generates a fresh CA and a serving certificate for the Service, signed by it. */
export async function generateServingCertificate(
  serviceName: string,
  namespace: string,
  now: Date,
): Promise<{ pair: TlsPair; ca: string }> {
  // Backdated a little so a replica whose clock lags does not reject its own certificate.
  const notBeforeDate = new Date(now.getTime() - 60 * 60 * 1000);
  const notAfterDate = new Date(now.getTime() + VALIDITY_MS);
  const common = { keyType: "ec", curve: "P-256", algorithm: "sha256", notBeforeDate } as const;
  const ca = await generate([{ name: "commonName", value: `${serviceName}.${namespace} DSO CA` }], {
    ...common,
    // The CA outlives the leaf by a day so the pair never expires in the wrong order.
    notAfterDate: new Date(notAfterDate.getTime() + DAY_MS),
    extensions: [
      { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
      {
        name: "keyUsage",
        keyCertSign: true,
        cRLSign: true,
        digitalSignature: true,
        critical: true,
      },
    ],
  });
  const names = serviceDnsNames(serviceName, namespace);
  const leaf = await generate([{ name: "commonName", value: names[0] ?? serviceName }], {
    ...common,
    notAfterDate,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: names.map((value) => ({ type: 2 as const, value })) },
    ],
  });
  return { pair: { cert: leaf.cert, key: leaf.private }, ca: ca.cert };
}

function decode(secret: SecretObject, key: string): string | undefined {
  const value = secret.data?.[key];
  return value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8");
}

function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** Why a stored certificate cannot be used as is, or undefined when it can. */
export function unusableReason(
  stored: ServingCertificate,
  serviceName: string,
  namespace: string,
  now: Date,
): string | undefined {
  try {
    checkPair(stored.pair, "stored certificate");
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  const leaf = new X509Certificate(stored.pair.cert);
  const host = serviceDnsNames(serviceName, namespace)[0] ?? serviceName;
  if (leaf.checkHost(host) === undefined) return `it is not issued for ${host}`;
  const left = new Date(leaf.validTo).getTime() - now.getTime();
  if (left < RENEW_BEFORE_MS) return `it expires on ${new Date(leaf.validTo).toISOString()}`;
  const issuedByBundle = splitPem(stored.caBundle).some((pem) => {
    try {
      return leaf.verify(new X509Certificate(pem).publicKey);
    } catch {
      return false;
    }
  });
  if (!issuedByBundle) return "its CA is not in ca.crt";
  return undefined;
}

function fromSecret(secret: SecretObject): ServingCertificate | undefined {
  const cert = decode(secret, SECRET_KEYS.cert);
  const key = decode(secret, SECRET_KEYS.key);
  const caBundle = decode(secret, SECRET_KEYS.ca);
  if (cert === undefined || key === undefined || caBundle === undefined) return undefined;
  return { pair: { cert, key }, caBundle };
}

function stillValidCas(bundle: string, now: Date): string[] {
  return splitPem(bundle).filter((pem) => {
    try {
      return new Date(new X509Certificate(pem).validTo).getTime() > now.getTime();
    } catch {
      return false;
    }
  });
}

function toSecret(
  options: SelfSignedOptions,
  cert: ServingCertificate,
  resourceVersion?: string,
): SecretObject {
  const b64 = (text: string): string => Buffer.from(text, "utf8").toString("base64");
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "kubernetes.io/tls",
    metadata: {
      name: options.secretName,
      namespace: options.namespace,
      labels: { "app.kubernetes.io/managed-by": "dso-webhook" },
      ...(resourceVersion === undefined ? {} : { resourceVersion }),
    },
    data: {
      [SECRET_KEYS.cert]: b64(cert.pair.cert),
      [SECRET_KEYS.key]: b64(cert.pair.key),
      [SECRET_KEYS.ca]: b64(cert.caBundle),
    },
  };
}

/**
 * Returns the serving certificate shared by all replicas: the Secret's when it is usable, else a
 * new one stored in the Secret. Concurrent replicas race safely: the loser of a create (409) or
 * of an update (stale resourceVersion) re-reads and uses the winner's.
 */
export async function ensureServingCertificate(
  api: SelfSignedKubeApi,
  options: SelfSignedOptions,
): Promise<ServingCertificate> {
  const { namespace, secretName, serviceName, logger } = options;
  const now = options.now?.() ?? new Date();
  for (let attempt = 0; attempt < 5; attempt++) {
    const secret = await api.readSecret(namespace, secretName);
    const stored = secret === undefined ? undefined : fromSecret(secret);
    if (stored !== undefined) {
      const reason = unusableReason(stored, serviceName, namespace, now);
      if (reason === undefined) return stored;
      logger.info(
        { secret: `${namespace}/${secretName}` },
        `renewing the webhook certificate: ${reason}`,
      );
    }
    const generated = await generateServingCertificate(serviceName, namespace, now);
    const previousCas = stored === undefined ? [] : stillValidCas(stored.caBundle, now);
    const next: ServingCertificate = {
      pair: generated.pair,
      // Keep only the newest previous CA: enough for the hand-over, and the bundle stays small.
      caBundle: [generated.ca, ...previousCas.slice(0, 1)].join("\n"),
    };
    if (secret === undefined) {
      const created = await api.createSecret(namespace, toSecret(options, next));
      if (created === "created") {
        logger.info({ secret: `${namespace}/${secretName}` }, "created the webhook certificate");
        return next;
      }
    } else {
      const replaced = await api.replaceSecret(
        namespace,
        toSecret(options, next, secret.metadata?.resourceVersion),
      );
      if (replaced === "replaced") {
        logger.info({ secret: `${namespace}/${secretName}` }, "renewed the webhook certificate");
        return next;
      }
    }
    // Another replica wrote the Secret first: loop to read and use theirs.
  }
  throw new SelfSignedError(
    "SELF_SIGNED_CONFLICT",
    `could not store the webhook certificate in Secret ${namespace}/${secretName}: it kept changing`,
  );
}

/**
 * The JSON patch that sets caBundle on every webhook entry, or undefined when all already carry it.
 * Each entry's name is tested first, so a concurrent edit that reorders the list makes the patch
 * fail instead of writing into the wrong entry.
 */
export function caBundlePatch(
  config: WebhookConfigurationObject,
  caBundlePem: string,
): Operation[] | undefined {
  const caBundle = Buffer.from(caBundlePem, "utf8").toString("base64");
  const webhooks = config.webhooks ?? [];
  if (webhooks.every((w) => w.clientConfig.caBundle === caBundle)) return undefined;
  return webhooks.flatMap((w, i): Operation[] => [
    { op: "test", path: `/webhooks/${i}/name`, value: w.name },
    // `add` on an object member also replaces an existing value.
    { op: "add", path: `/webhooks/${i}/clientConfig/caBundle`, value: caBundle },
  ]);
}

/** Sets caBundle on every webhook entry of the configuration; returns whether anything changed. */
export async function publishCaBundle(
  api: SelfSignedKubeApi,
  webhookConfigName: string,
  caBundlePem: string,
  logger: Logger,
): Promise<boolean> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await api.readWebhookConfiguration(webhookConfigName);
    const patch = caBundlePatch(current, caBundlePem);
    if (patch === undefined) return false;
    if ((await api.patchWebhookConfiguration(webhookConfigName, patch)) === "patched") {
      logger.info(
        { webhookConfiguration: webhookConfigName, webhooks: current.webhooks?.length ?? 0 },
        "set caBundle on the MutatingWebhookConfiguration",
      );
      return true;
    }
  }
  throw new SelfSignedError(
    "WEBHOOK_CONFIG_CONFLICT",
    `could not set caBundle on MutatingWebhookConfiguration ${webhookConfigName}: it kept changing`,
  );
}

function statusOf(error: unknown): number | undefined {
  return error instanceof ApiException ? error.code : undefined;
}

/** The real API: client-node against the cluster the webhook runs in. */
export function kubeSelfSignedApi(kubeConfig: KubeConfig): SelfSignedKubeApi {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const admission = kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  // client-node declares its models as classes; its serializer reads plain nested data.
  const asSecret = (body: SecretObject): V1Secret => Object.assign(new V1Secret(), body);
  return {
    async readSecret(namespace, name) {
      try {
        return await core.readNamespacedSecret({ name, namespace });
      } catch (error) {
        if (statusOf(error) === 404) return undefined;
        throw error;
      }
    },
    async createSecret(namespace, body) {
      try {
        await core.createNamespacedSecret({ namespace, body: asSecret(body) });
        return "created";
      } catch (error) {
        if (statusOf(error) === 409) return "exists";
        throw error;
      }
    },
    async replaceSecret(namespace, body) {
      try {
        await core.replaceNamespacedSecret({
          name: body.metadata?.name ?? "",
          namespace,
          body: asSecret(body),
        });
        return "replaced";
      } catch (error) {
        if (statusOf(error) === 409) return "conflict";
        throw error;
      }
    },
    async readWebhookConfiguration(name) {
      const config = await admission.readMutatingWebhookConfiguration({ name });
      return config;
    },
    async patchWebhookConfiguration(name, patch) {
      try {
        await admission.patchMutatingWebhookConfiguration(
          { name, body: patch },
          setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
        );
        return "patched";
      } catch (error) {
        // A failed `test` operation is answered 422 (older servers: 500 with the same reason).
        const status = statusOf(error);
        if (status === 409 || status === 422) return "conflict";
        throw error;
      }
    },
  };
}
