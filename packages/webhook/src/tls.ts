/**
 * The serving certificate: loading a PEM pair from files, checking it, and swapping it into the
 * running HTTPS server when the files change (cert-manager renewals, Helm upgrades) without a
 * restart and without dropping connections: `server.setSecureContext` only affects new handshakes.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import { watchFiles, type FileWatch } from "./file-watch.js";
import type { Logger } from "./logger.js";
import type { WebhookMetrics } from "./metrics.js";

/** TLS 1.0 and 1.1 are refused; the API server speaks 1.2 and 1.3. */
export const TLS_MIN_VERSION = "TLSv1.2";

export interface TlsPair {
  /** PEM certificate, optionally followed by intermediates. */
  cert: string;
  /** PEM private key. Never logged. */
  key: string;
}

export type TlsErrorCode = "TLS_READ_FAILED" | "TLS_INVALID_PAIR";

export class TlsError extends Error {
  override readonly name = "TlsError";
  constructor(
    readonly code: TlsErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function secureContextOptions(pair: TlsPair): SecureContextOptions {
  return { cert: pair.cert, key: pair.key, minVersion: TLS_MIN_VERSION };
}

/** SHA-256 fingerprint of the leaf certificate (for logs and tests; it is public information). */
export function certificateFingerprint(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256;
}

/** Expiry of the leaf certificate. */
export function certificateNotAfter(certPem: string): Date {
  return new Date(new X509Certificate(certPem).validTo);
}

/** Throws TlsError when the pair cannot serve (bad PEM, key not matching the certificate). */
export function checkPair(pair: TlsPair, source: string): void {
  try {
    createSecureContext(secureContextOptions(pair));
    new X509Certificate(pair.cert);
  } catch (error) {
    // OpenSSL's messages name the problem ("key values mismatch", "no start line"), never key bytes.
    const reason = error instanceof Error ? error.message : String(error);
    throw new TlsError(
      "TLS_INVALID_PAIR",
      `${source}: not a usable certificate and key: ${reason}`,
    );
  }
}

export async function readPairFromFiles(certFile: string, keyFile: string): Promise<TlsPair> {
  const read = async (file: string, what: string): Promise<string> => {
    try {
      return await readFile(file, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "error";
      throw new TlsError("TLS_READ_FAILED", `cannot read ${what} file ${file}: ${code}`);
    }
  };
  const [cert, key] = await Promise.all([
    read(certFile, "certificate"),
    read(keyFile, "private key"),
  ]);
  const pair = { cert, key };
  checkPair(pair, `${certFile} and ${keyFile}`);
  return pair;
}

export interface CertificateWatchOptions {
  certFile: string;
  keyFile: string;
  /** The pair the server serves now. */
  initial: TlsPair;
  /** Installs a checked pair, e.g. `(p) => server.setSecureContext(secureContextOptions(p))`. */
  apply: (pair: TlsPair) => void;
  logger: Logger;
  metrics: WebhookMetrics;
  pollIntervalMs: number;
  debounceMs?: number;
}

/**
 * Reloads the pair when the files change. A bad new pair (unreadable, mismatched, half-written)
 * is logged and counted, and the previous pair keeps serving.
 */
export function watchCertificateFiles(options: CertificateWatchOptions): FileWatch {
  const { certFile, keyFile, logger, metrics } = options;
  let current = options.initial;
  return watchFiles(
    [certFile, keyFile],
    async () => {
      let next: TlsPair;
      try {
        next = await readPairFromFiles(certFile, keyFile);
      } catch (error) {
        metrics.certificateReloads.inc({ result: "failure" });
        logger.error(
          { code: error instanceof TlsError ? error.code : "TLS_READ_FAILED", certFile, keyFile },
          `certificate reload failed, still serving the previous certificate: ${error instanceof Error ? error.message : String(error)}`,
        );
        return;
      }
      if (next.cert === current.cert && next.key === current.key) return;
      options.apply(next);
      current = next;
      metrics.certificateReloads.inc({ result: "success" });
      logger.info(
        {
          certFile,
          fingerprint: certificateFingerprint(next.cert),
          notAfter: certificateNotAfter(next.cert).toISOString(),
        },
        "certificate reloaded",
      );
    },
    {
      pollIntervalMs: options.pollIntervalMs,
      ...(options.debounceMs === undefined ? {} : { debounceMs: options.debounceMs }),
    },
  );
}
