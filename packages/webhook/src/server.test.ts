import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TLSSocket, connect } from "node:tls";
import { X509Certificate } from "node:crypto";
import { Registry } from "prom-client";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig, type WebhookConfig } from "./config.js";
import { createMetrics } from "./metrics.js";
import { startServer, type RunningServer } from "./server.js";
import {
  FakeApiServer,
  FakeCluster,
  captureLogs,
  eventually,
  fixture,
  localhostPair,
  serviceAccount,
} from "./test-helpers.js";
import type { TlsPair } from "./tls.js";

/**
 * A directory laid out like a Kubernetes Secret volume: `tls.crt -> ..data/tls.crt`,
 * `..data -> ..<timestamp>`, swapped atomically on update.
 */
class SecretVolume {
  private generation = 0;
  constructor(readonly dir: string) {}

  write(pair: TlsPair): void {
    this.generation += 1;
    const versioned = `..gen${this.generation}`;
    mkdirSync(join(this.dir, versioned));
    writeFileSync(join(this.dir, versioned, "tls.crt"), pair.cert);
    writeFileSync(join(this.dir, versioned, "tls.key"), pair.key);
    symlinkSync(versioned, join(this.dir, "..data_tmp"));
    renameSync(join(this.dir, "..data_tmp"), join(this.dir, "..data"));
    if (this.generation === 1) {
      symlinkSync("..data/tls.crt", join(this.dir, "tls.crt"));
      symlinkSync("..data/tls.key", join(this.dir, "tls.key"));
    }
  }

  get certFile(): string {
    return join(this.dir, "tls.crt");
  }
  get keyFile(): string {
    return join(this.dir, "tls.key");
  }
}

function configFor(volume: SecretVolume, extra: string[] = []): WebhookConfig {
  const loaded = loadConfig(
    [
      "--port=0",
      "--host=127.0.0.1",
      `--tls-cert=${volume.certFile}`,
      `--tls-key=${volume.keyFile}`,
      "--watch-poll-interval=1",
      "--shutdown-timeout=5",
      ...extra,
    ],
    {},
  );
  if (loaded.kind !== "config") throw new Error(JSON.stringify(loaded));
  return loaded.config;
}

interface Answer {
  status: number;
  body: string;
  fingerprint: string;
}

function call(
  port: number,
  path: string,
  options: RequestOptions & { body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        path,
        method: options.body === undefined ? "GET" : "POST",
        rejectUnauthorized: false,
        agent: false,
        headers: options.body === undefined ? {} : { "content-type": "application/json" },
        ...options,
      },
      (res) => {
        const socket = res.socket;
        if (!(socket instanceof TLSSocket)) throw new Error("not a TLS connection");
        const fingerprint = socket.getPeerCertificate().fingerprint256;
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, body, fingerprint });
        });
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

function handshake(
  port: number,
  min: "TLSv1" | "TLSv1.2",
  max: "TLSv1.1" | "TLSv1.2" | "TLSv1.3",
): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({
      host: "127.0.0.1",
      port,
      rejectUnauthorized: false,
      minVersion: min,
      maxVersion: max,
      // Lets this client offer TLS 1.0/1.1 at all, so the refusal we see is the server's.
      ciphers: "DEFAULT@SECLEVEL=0",
    });
    socket.on("secureConnect", () => {
      resolve(socket.getProtocol() ?? "unknown");
      socket.end();
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      resolve(`error:${error.code ?? error.message}`);
    });
  });
}

const fingerprintOf = (pair: TlsPair): string => new X509Certificate(pair.cert).fingerprint256;

describe("HTTPS server", () => {
  let first: TlsPair;
  let second: TlsPair;
  let mismatched: TlsPair;
  let server: RunningServer | undefined;
  let dir: string;

  beforeAll(async () => {
    [first, second] = await Promise.all([localhostPair("first"), localhostPair("second")]);
    mismatched = { cert: second.cert, key: first.key };
  });

  afterEach(async () => {
    await server?.shutdown();
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async (volume: SecretVolume, logs = captureLogs()): Promise<RunningServer> => {
    server = await startServer(configFor(volume), {
      logger: logs.logger,
      metrics: createMetrics(new Registry()),
      debounceMs: 20,
    });
    return server;
  };

  it("refuses TLS 1.1, accepts 1.2 and 1.3, and answers AdmissionReviews", async () => {
    dir = mkdtempSync(join(tmpdir(), "dso-webhook-tls-"));
    const volume = new SecretVolume(dir);
    volume.write(first);
    const { port } = await start(volume);

    expect(await handshake(port, "TLSv1", "TLSv1.1")).toBe(
      "error:ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION",
    );
    expect(await handshake(port, "TLSv1.2", "TLSv1.2")).toBe("TLSv1.2");
    expect(await handshake(port, "TLSv1.2", "TLSv1.3")).toBe("TLSv1.3");

    const review = fixture("review-deployment-pod.json");
    const answer = await call(port, "/mutate", { body: JSON.stringify(review) });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({
      response: { allowed: true, patchType: "JSONPatch" },
    });
    expect((await call(port, "/healthz")).status).toBe(200);
    expect((await call(port, "/readyz")).status).toBe(200);
  });

  it("switches to replaced certificate files without a restart while requests keep succeeding", async () => {
    dir = mkdtempSync(join(tmpdir(), "dso-webhook-tls-"));
    const volume = new SecretVolume(dir);
    volume.write(first);
    const logs = captureLogs();
    const running = await start(volume, logs);
    const { port } = running;
    expect((await call(port, "/healthz")).fingerprint).toBe(fingerprintOf(first));

    // Requests run continuously across the swap; every one must succeed.
    const traffic = { stop: false };
    const statuses: number[] = [];
    const load = (async () => {
      while (!traffic.stop) statuses.push((await call(port, "/healthz")).status);
    })();

    volume.write(second);
    await eventually(
      async () => (await call(port, "/healthz")).fingerprint === fingerprintOf(second),
    );

    // A broken pair (key of another certificate) is refused; the good one keeps serving.
    volume.write(mismatched);
    await eventually(() => logs.text().includes("certificate reload failed"));
    expect((await call(port, "/healthz")).fingerprint).toBe(fingerprintOf(second));
    expect(await handshake(port, "TLSv1", "TLSv1.1")).toBe(
      "error:ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION",
    );

    traffic.stop = true;
    await load;
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const metrics = await running.metrics.registry.metrics();
    expect(metrics).toContain('dso_webhook_certificate_reloads_total{result="success"} 1');
    expect(metrics).toMatch(/dso_webhook_certificate_reloads_total\{result="failure"\} [1-9]/);
    expect(logs.text()).not.toContain("PRIVATE KEY");
  });

  it("finishes an in-flight review on shutdown, then stops accepting", async () => {
    dir = mkdtempSync(join(tmpdir(), "dso-webhook-tls-"));
    const volume = new SecretVolume(dir);
    volume.write(first);
    const running = await start(volume);
    const body = JSON.stringify(fixture("review-deployment-pod.json"));

    // Send half the body, begin the shutdown, then send the rest.
    const answer = new Promise<number>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: "127.0.0.1",
          port: running.port,
          path: "/mutate",
          method: "POST",
          rejectUnauthorized: false,
          agent: false,
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
          },
        },
        (res) => {
          res.resume();
          res.on("end", () => {
            resolve(res.statusCode ?? 0);
          });
        },
      );
      req.on("error", reject);
      req.write(body.slice(0, 100));
      setTimeout(() => {
        const stopping = running.shutdown();
        setTimeout(() => {
          req.end(body.slice(100));
          void stopping;
        }, 100);
      }, 100);
    });
    expect(await answer).toBe(200);
    await running.shutdown();
    await expect(call(running.port, "/healthz")).rejects.toThrow();
    server = undefined;
  });

  it("fails to start on an unusable certificate pair", async () => {
    dir = mkdtempSync(join(tmpdir(), "dso-webhook-tls-"));
    const volume = new SecretVolume(dir);
    volume.write(mismatched);
    await expect(start(volume)).rejects.toMatchObject({ code: "TLS_INVALID_PAIR" });
  });
});

describe("HTTPS server with Kubernetes", () => {
  it("bootstraps a self-signed certificate through the Secret and publishes the caBundle", async () => {
    const cluster = new FakeCluster();
    const loaded = loadConfig(
      [
        "--port=0",
        "--host=127.0.0.1",
        "--cert-mode=self-signed",
        "--self-signed-secret=dso-webhook-tls",
        "--webhook-config-name=dso-webhook",
        "--service-name=dso-webhook",
        "--namespace=dso-system",
      ],
      {},
    );
    if (loaded.kind !== "config") throw new Error(JSON.stringify(loaded));
    const logs = captureLogs();
    const running = await startServer(loaded.config, {
      logger: logs.logger,
      metrics: createMetrics(new Registry()),
      selfSignedApi: cluster,
    });
    try {
      const served = (await call(running.port, "/healthz")).fingerprint;
      const stored = Buffer.from(cluster.secret?.data?.["tls.crt"] ?? "", "base64").toString(
        "utf8",
      );
      expect(served).toBe(new X509Certificate(stored).fingerprint256);
      await eventually(
        () =>
          cluster.config.webhooks?.every(
            (w) => w.clientConfig.caBundle !== undefined && w.clientConfig.caBundle !== "b2xk",
          ) === true,
      );
      expect(cluster.config.webhooks?.[0]?.clientConfig.caBundle).toBe(
        cluster.secret?.data?.["ca.crt"],
      );
      expect(logs.text()).not.toContain("PRIVATE KEY");
    } finally {
      await running.shutdown();
    }
  });

  it("is ready only once service accounts are synced, and uses their annotations", async () => {
    const api = new FakeApiServer([
      serviceAccount(
        "payments",
        "payments-api",
        { "azure.workload.identity/client-id": "sa-client-id" },
        "7",
      ),
    ]);
    // The API server fails until the test has seen the webhook report not ready.
    api.listFailures = Number.POSITIVE_INFINITY;
    const kubeConfig = await api.listen();
    const dir = mkdtempSync(join(tmpdir(), "dso-webhook-sa-"));
    const volume = new SecretVolume(dir);
    volume.write(await localhostPair());
    writeFileSync(
      join(dir, "policy.yaml"),
      "apiVersion: dso.io/v1\nkind: InjectionPolicy\nreadServiceAccounts: true\n",
    );
    const running = await startServer(configFor(volume, [`--policy=${join(dir, "policy.yaml")}`]), {
      logger: captureLogs().logger,
      metrics: createMetrics(new Registry()),
      kubeConfig: () => kubeConfig,
      serviceAccountRetryMs: 300,
    });
    try {
      const notReady = await call(running.port, "/readyz");
      expect(notReady.status).toBe(503);
      expect(notReady.body).toContain("service accounts not synced yet");
      api.listFailures = 0;
      await eventually(async () => (await call(running.port, "/readyz")).status === 200);

      const review = fixture("review-deployment-pod.json") as {
        request: { object: { metadata: { annotations: Record<string, string> } } };
      };
      review.request.object.metadata.annotations = {
        "dso.io/inject": "true",
        "dso.io/provider": "azure",
        "dso.io/azure-vault": "payments-kv",
        "dso.io/azure-tenant-id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "dso.io/secret-db-password": "db-password",
      };
      const answer = await call(running.port, "/mutate", { body: JSON.stringify(review) });
      const patch = Buffer.from(
        (JSON.parse(answer.body) as { response: { patch: string } }).response.patch,
        "base64",
      ).toString("utf8");
      expect(patch).toContain("sa-client-id");
    } finally {
      await running.shutdown();
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
