import { generateKeyPairSync } from "node:crypto";
import forge from "node-forge";

export interface TestCert {
  keyPem: string;
  certPem: string;
  key: forge.pki.rsa.PrivateKey;
  cert: forge.pki.Certificate;
}

/** A certificate for tests; RSA keys come from node's crypto because forge's are slow in pure JS. */
export function makeCert(options: {
  commonName: string;
  issuer?: TestCert;
  altNames?: string[];
  isCa?: boolean;
}): TestCert {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
  const key = forge.pki.privateKeyFromPem(keyPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = String(Math.floor(Math.random() * 1e9) + 1);
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  const subject = [{ name: "commonName", value: options.commonName }];
  cert.setSubject(subject);
  cert.setIssuer(options.issuer !== undefined ? options.issuer.cert.subject.attributes : subject);
  const ext: object[] = [{ name: "basicConstraints", cA: options.isCa === true }];
  if (options.altNames !== undefined) {
    ext.push({
      name: "subjectAltName",
      altNames: options.altNames.map((n) =>
        /^\d/.test(n) ? { type: 7, ip: n } : { type: 2, value: n },
      ),
    });
  }
  cert.setExtensions(ext);
  cert.sign(options.issuer?.key ?? key, forge.md.sha256.create());
  return { keyPem, certPem: forge.pki.certificateToPem(cert), key, cert };
}

/** A PKCS#12 bundle as Key Vault stores it: base64, empty password. */
export function pkcs12Base64(
  key: forge.pki.rsa.PrivateKey,
  chain: forge.pki.Certificate[],
): string {
  const asn1 = forge.pkcs12.toPkcs12Asn1(key, chain, "", { algorithm: "3des" });
  return forge.util.encode64(forge.asn1.toDer(asn1).getBytes());
}
