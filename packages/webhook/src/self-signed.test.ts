import { X509Certificate } from "node:crypto";
import { createServer, connect } from "node:tls";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import {
  ensureServingCertificate,
  publishCaBundle,
  type ServingCertificate,
} from "./self-signed.js";
import { FakeCluster, captureLogs } from "./test-helpers.js";

const NS = "dso-system";
const SECRET = "dso-webhook-tls";
const SERVICE = "dso-webhook";
const DAY = 24 * 60 * 60 * 1000;

const options = (now?: Date) => ({
  namespace: NS,
  secretName: SECRET,
  serviceName: SERVICE,
  logger: captureLogs().logger,
  ...(now === undefined ? {} : { now: () => now }),
});

const decode = (b64: string | undefined): string =>
  Buffer.from(b64 ?? "", "base64").toString("utf8");
const casIn = (bundle: string): X509Certificate[] =>
  (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (pem) => new X509Certificate(pem),
  );

/** Serves `cert` and connects as the API server would: verifying against caBundle for the Service name. */
async function apiServerTrusts(cert: ServingCertificate, caBundle: string): Promise<boolean> {
  const server = createServer({ cert: cert.pair.cert, key: cert.pair.key, minVersion: "TLSv1.2" });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise<boolean>((resolve) => {
      const socket = connect({
        host: "127.0.0.1",
        port,
        ca: caBundle,
        servername: `${SERVICE}.${NS}.svc`,
      });
      socket.on("secureConnect", () => {
        resolve(socket.authorized);
        socket.end();
      });
      socket.on("error", () => {
        resolve(false);
      });
    });
  } finally {
    server.close();
  }
}

describe("self-signed bootstrap", () => {
  it("creates the Secret once, and every replica after that reuses it", async () => {
    const cluster = new FakeCluster();
    const issued = await ensureServingCertificate(cluster, options());
    expect(cluster.writes).toBe(1);
    expect(cluster.secret?.type).toBe("kubernetes.io/tls");
    expect(decode(cluster.secret?.data?.["tls.crt"])).toBe(issued.pair.cert);

    const leaf = new X509Certificate(issued.pair.cert);
    expect(leaf.subjectAltName).toContain(`DNS:${SERVICE}.${NS}.svc`);
    expect(leaf.subjectAltName).toContain(`DNS:${SERVICE}.${NS}.svc.cluster.local`);
    const days = (new Date(leaf.validTo).getTime() - Date.now()) / DAY;
    expect(days).toBeGreaterThan(360);
    expect(await apiServerTrusts(issued, issued.caBundle)).toBe(true);

    const again = await ensureServingCertificate(cluster, options());
    expect(again).toEqual(issued);
    expect(cluster.writes).toBe(1);
  });

  it("uses the other replica's certificate when it created the Secret first", async () => {
    const cluster = new FakeCluster();
    const winnerCluster = new FakeCluster();
    await ensureServingCertificate(winnerCluster, options());
    cluster.beforeWrite = () => {
      cluster.secret = winnerCluster.secret;
    };
    const issued = await ensureServingCertificate(cluster, options());
    expect(issued.pair.cert).toBe(decode(winnerCluster.secret?.data?.["tls.crt"]));
    expect(cluster.writes).toBe(0);
  });

  it("renews within 30 days of expiry and keeps the old CA in the bundle for the hand-over", async () => {
    const cluster = new FakeCluster();
    const old = await ensureServingCertificate(cluster, options());
    const notAfter = new Date(new X509Certificate(old.pair.cert).validTo);

    const at40Days = await ensureServingCertificate(
      cluster,
      options(new Date(notAfter.getTime() - 40 * DAY)),
    );
    expect(at40Days.pair.cert).toBe(old.pair.cert);

    const soon = new Date(notAfter.getTime() - 20 * DAY);
    const renewed = await ensureServingCertificate(cluster, options(soon));
    expect(renewed.pair.cert).not.toBe(old.pair.cert);
    expect(cluster.writes).toBe(2);
    const cas = casIn(renewed.caBundle);
    expect(cas).toHaveLength(2);
    expect(new X509Certificate(renewed.pair.cert).verify(cas[0]?.publicKey ?? ({} as never))).toBe(
      true,
    );
    // Replicas still serving the old certificate stay trusted by the new bundle.
    expect(await apiServerTrusts(old, renewed.caBundle)).toBe(true);
    // (The renewed pair is dated from the simulated clock, so it is checked by signature above.)
    expect(new Date(new X509Certificate(renewed.pair.cert).validFrom).getTime()).toBeLessThan(
      soon.getTime(),
    );
  });

  it("renews when another replica changed the Secret during its own renewal (conflict)", async () => {
    const cluster = new FakeCluster();
    await ensureServingCertificate(cluster, options());
    cluster.secret = {
      ...cluster.secret,
      data: { ...cluster.secret?.data, "tls.key": Buffer.from("garbage").toString("base64") },
    };
    const other = new FakeCluster();
    await ensureServingCertificate(other, options());
    cluster.beforeWrite = () => {
      cluster.secret = {
        ...other.secret,
        metadata: { ...other.secret?.metadata, resourceVersion: "99" },
      };
    };
    const issued = await ensureServingCertificate(cluster, options());
    expect(issued.pair.cert).toBe(decode(other.secret?.data?.["tls.crt"]));
  });

  it("regenerates a certificate issued for another Service", async () => {
    const cluster = new FakeCluster();
    const first = await ensureServingCertificate(cluster, options());
    const renamed = await ensureServingCertificate(cluster, {
      ...options(),
      serviceName: "dso-injector",
    });
    expect(renamed.pair.cert).not.toBe(first.pair.cert);
    expect(new X509Certificate(renamed.pair.cert).checkHost(`dso-injector.${NS}.svc`)).toBe(
      `dso-injector.${NS}.svc`,
    );
  });

  it("sets caBundle on every webhook entry, retrying when the list changed, and only when needed", async () => {
    const cluster = new FakeCluster();
    const issued = await ensureServingCertificate(cluster, options());
    const logger = captureLogs().logger;
    // Someone reorders the entries between our read and our patch: the name tests fail, we retry.
    cluster.beforeWrite = () => {
      cluster.config = {
        ...cluster.config,
        webhooks: [...(cluster.config.webhooks ?? [])].reverse(),
      };
    };
    expect(await publishCaBundle(cluster, "dso-webhook", issued.caBundle, logger)).toBe(true);
    const bundles = cluster.config.webhooks?.map((w) => decode(w.clientConfig.caBundle));
    expect(bundles).toEqual([issued.caBundle, issued.caBundle]);
    expect(cluster.config.webhooks?.map((w) => w.name)).toEqual([
      "pods-system.dso.io",
      "pods.dso.io",
    ]);
    const writes = cluster.writes;
    expect(await publishCaBundle(cluster, "dso-webhook", issued.caBundle, logger)).toBe(false);
    expect(cluster.writes).toBe(writes);
  });
});
