// A throwaway certificate authority made with openssl: the API server's serving cert, the admin
// client cert, serving certs for our webhook and other servers, and the service-account key pair.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./processes.js";

export interface Leaf {
  cert: string;
  key: string;
  certPem: string;
  keyPem: string;
}

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  caPem: string;
  saKey: string;
  saPub: string;
  /** A leaf signed by the CA. `sans` like ["IP:127.0.0.1", "DNS:localhost"]. */
  issue(
    name: string,
    opts: { subject: string; usage: "server" | "client"; sans?: string[] },
  ): Promise<Leaf>;
}

function openssl(): string {
  const bin = process.env.DSO_E2E_OPENSSL;
  return bin === undefined || bin === "" ? "openssl" : bin;
}

async function ossl(args: string[]): Promise<void> {
  const r = await run(openssl(), args, { timeoutMs: 60_000 });
  if (r.code !== 0)
    throw new Error(`openssl ${args.slice(0, 2).join(" ")} failed (${r.code}): ${r.stderr}`);
}

export async function createPki(dir: string): Promise<Pki> {
  mkdirSync(dir, { recursive: true });
  const caCert = join(dir, "ca.crt");
  const caKey = join(dir, "ca.key");
  const saKey = join(dir, "sa.key");
  const saPub = join(dir, "sa.pub");
  await Promise.all([
    ossl([
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=dso-e2e-ca",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
      "-keyout",
      caKey,
      "-out",
      caCert,
    ]),
    ossl(["genrsa", "-out", saKey, "2048"]).then(() =>
      ossl(["rsa", "-in", saKey, "-pubout", "-out", saPub]),
    ),
  ]);
  const caPem = readFileSync(caCert, "utf8");
  let serial = 1;

  async function issue(
    name: string,
    opts: { subject: string; usage: "server" | "client"; sans?: string[] },
  ): Promise<Leaf> {
    const key = join(dir, `${name}.key`);
    const csr = join(dir, `${name}.csr`);
    const cert = join(dir, `${name}.crt`);
    const ext = join(dir, `${name}.ext`);
    const lines = [
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage=${opts.usage === "server" ? "serverAuth" : "clientAuth"}`,
    ];
    if (opts.sans !== undefined && opts.sans.length > 0)
      lines.push(`subjectAltName=${opts.sans.join(",")}`);
    writeFileSync(ext, lines.join("\n") + "\n");
    await ossl([
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      opts.subject,
      "-keyout",
      key,
      "-out",
      csr,
    ]);
    // An explicit serial per leaf: -CAcreateserial races when leaves are issued concurrently.
    await ossl([
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      caCert,
      "-CAkey",
      caKey,
      "-set_serial",
      String(serial++),
      "-days",
      "2",
      "-extfile",
      ext,
      "-out",
      cert,
    ]);
    return { cert, key, certPem: readFileSync(cert, "utf8"), keyPem: readFileSync(key, "utf8") };
  }

  return { dir, caCert, caKey, caPem, saKey, saPub, issue };
}
