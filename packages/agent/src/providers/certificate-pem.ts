import forge from "node-forge";
import { AgentError } from "../errors.js";

// PKCS#12 bag types (RFC 7292).
const KEY_BAG = "1.2.840.113549.1.12.10.1.1";
const SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2";
const CERT_BAG = "1.2.840.113549.1.12.10.1.3";

/**
 * Turns a Key Vault certificate's backing secret into PEM: the private key, then the certificate
 * chain (leaf first). Key Vault stores it either as PEM already (`application/x-pem-file`) or as a
 * base64 PKCS#12 blob without a password (`application/x-pkcs12`). Node's crypto cannot read
 * PKCS#12, so node-forge (widely used, maintained by Digital Bazaar) does the conversion.
 */
export function certificatePem(
  value: string,
  contentType: string | undefined,
  what: string,
): string {
  if (contentType === "application/x-pem-file" || value.trimStart().startsWith("-----BEGIN")) {
    return value.endsWith("\n") ? value : `${value}\n`;
  }
  try {
    const der = forge.util.decode64(value);
    const p12 = forge.pkcs12.pkcs12FromAsn1(forge.asn1.fromDer(der), false, "");
    const keys = [
      ...(p12.getBags({ bagType: SHROUDED_KEY_BAG })[SHROUDED_KEY_BAG] ?? []),
      ...(p12.getBags({ bagType: KEY_BAG })[KEY_BAG] ?? []),
    ];
    const certs = p12.getBags({ bagType: CERT_BAG })[CERT_BAG] ?? [];
    const key = keys.find((b) => b.key !== undefined)?.key;
    if (key === undefined) throw new Error("no private key in the PKCS#12 bundle");
    const keyPem = forge.pki.privateKeyInfoToPem(
      forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(key)),
    );
    const certObjs = certs.flatMap((b) => (b.cert !== undefined ? [b.cert] : []));
    const leafFirst = orderChain(certObjs);
    return keyPem + leafFirst.map((c) => forge.pki.certificateToPem(c)).join("");
  } catch (err) {
    throw new AgentError(
      "AZURE_BAD_RESPONSE",
      `cannot convert ${what} to PEM (content type ${contentType ?? "unset"}): ${err instanceof Error ? err.message : "invalid PKCS#12"}`,
      { retryable: false },
    );
  }
}

/** Orders certificates leaf first: the leaf is the one that issued no other certificate in the bundle. */
function orderChain(certs: forge.pki.Certificate[]): forge.pki.Certificate[] {
  const leaf =
    certs.find((c) => !certs.some((o) => o !== c && o.issuer.hash === c.subject.hash)) ?? certs[0];
  if (leaf === undefined) return [];
  const out = [leaf];
  let cur = leaf;
  while (out.length < certs.length) {
    const next = certs.find((c) => !out.includes(c) && c.subject.hash === cur.issuer.hash);
    if (next === undefined) break;
    out.push(next);
    cur = next;
  }
  for (const c of certs) if (!out.includes(c)) out.push(c);
  return out;
}
