import type { AccessToken, TokenCredential } from "@azure/identity";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentConfig, AzureConfig } from "@dso/core";
import { AgentError } from "../errors.js";
import { AgentMetrics } from "../metrics.js";
import { runOnce } from "../run-once.js";
import { Sidecar } from "../sidecar.js";
import { capturingLogger, findLeaks, tempDir } from "../testing/helpers.js";
import { FakeKeyVault } from "../../../../test/fakes/fake-key-vault.js";
import { makeCert, pkcs12Base64, type TestCert } from "../testing/tls.js";
import { AzureProvider } from "./azure.js";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

const TOKEN = "aad-access-token-7f3e9c";

/** A credential that hands out a fixed token and records the scopes it was asked for. */
class StaticCredential implements TokenCredential {
  readonly scopes: string[] = [];
  getToken(scopes: string | string[]): Promise<AccessToken> {
    this.scopes.push(...(Array.isArray(scopes) ? scopes : [scopes]));
    return Promise.resolve({ token: TOKEN, expiresOnTimestamp: Date.now() + 3_600_000 });
  }
}

describe("AzureProvider against a local Key Vault API over HTTPS", () => {
  let server: FakeKeyVault;
  let url: string;
  let tls: TestCert;
  let ca: TestCert;
  let leaf: TestCert;

  beforeAll(async () => {
    tls = makeCert({ commonName: "127.0.0.1", altNames: ["127.0.0.1", "localhost"] });
    ca = makeCert({ commonName: "Test CA", isCa: true });
    leaf = makeCert({ commonName: "web.example", issuer: ca });
    server = new FakeKeyVault(tls, TOKEN);
    server.secrets.set("api-key", [
      { value: "old-api-key-0001", version: "v1aaaaaaaa" },
      { value: "api-key-value-0002", version: "v2bbbbbbbb" },
    ]);
    server.secrets.set("web-tls", [
      {
        value: pkcs12Base64(leaf.key, [leaf.cert, ca.cert]),
        version: "c1",
        contentType: "application/x-pkcs12",
      },
    ]);
    server.secrets.set("web-pem", [
      {
        value: leaf.keyPem + leaf.certPem + ca.certPem,
        version: "p1",
        contentType: "application/x-pem-file",
      },
    ]);
    url = await server.listen();
  });

  afterAll(async () => {
    await server.close();
  });

  function provider(over: Partial<AzureConfig> = {}) {
    const { logger, lines } = capturingLogger();
    const credential = new StaticCredential();
    const config: AzureConfig = {
      vaultUrl: url,
      auth: "workload-identity",
      clientId: "11111111-2222-3333-4444-555555555555",
      serviceVersion: "7.4",
      disableChallengeResourceVerification: true,
      ...over,
    };
    return {
      p: new AzureProvider({ config, logger, credential, ca: tls.certPem }),
      lines,
      credential,
    };
  }

  it("answers the bearer challenge and reads the latest version with the configured api-version", async () => {
    const { p, credential } = provider();
    const before = server.requests.length;
    const got = await p.fetch({ provider: "azure", kind: "secret", name: "api-key" });
    expect(got).toEqual({ value: "api-key-value-0002", version: "v2bbbbbbbb" });
    const reqs = server.requests.slice(before);
    expect(reqs.map((r) => r.authorized)).toEqual([false, true]);
    expect(reqs.every((r) => r.apiVersion === "7.4")).toBe(true);
    expect(credential.scopes).toContain("https://vault.azure.net/.default");
  });

  it("reads a pinned version", async () => {
    const { p } = provider();
    const got = await p.fetch({
      provider: "azure",
      kind: "secret",
      name: "api-key",
      version: "v1aaaaaaaa",
    });
    expect(got.value).toBe("old-api-key-0001");
    expect(server.requests.at(-1)?.path).toBe("/secrets/api-key/v1aaaaaaaa");
  });

  it("waits for Retry-After on 429 and then succeeds", async () => {
    const { p } = provider();
    await p.fetch({ provider: "azure", kind: "secret", name: "api-key" }); // warm the token
    server.throttle.set("api-key", 1);
    const before = server.requests.length;
    const t0 = Date.now();
    const got = await p.fetch({ provider: "azure", kind: "secret", name: "api-key" });
    expect(got.value).toBe("api-key-value-0002");
    const reqs = server.requests.slice(before);
    expect(reqs).toHaveLength(2);
    expect((reqs[1]?.at ?? 0) - (reqs[0]?.at ?? 0)).toBeGreaterThanOrEqual(950);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
  });

  it.each([
    { name: "web-tls", what: "PKCS#12" },
    { name: "web-pem", what: "PEM" },
  ])("renders a $what certificate as PEM key then chain, leaf first", async ({ name }) => {
    const { p } = provider();
    const got = await p.fetch({ provider: "azure", kind: "certificate", name });
    const pem = got.value as string;
    const blocks = pem.match(/-----BEGIN [A-Z ]+-----[\s\S]+?-----END [A-Z ]+-----/g) ?? [];
    expect(blocks).toHaveLength(3);
    const key = createPrivateKey(blocks[0] ?? "");
    const leafCert = new X509Certificate(blocks[1] ?? "");
    expect(leafCert.subject).toContain("web.example");
    expect(leafCert.checkPrivateKey(key)).toBe(true);
    expect(new X509Certificate(blocks[2] ?? "").subject).toContain("Test CA");
  });

  it.each([
    {
      name: "forbidden-one",
      setup: () => server.forbidden.add("forbidden-one"),
      code: "AZURE_FORBIDDEN",
      has: ["403", "workload-identity", "11111111-2222"],
    },
    {
      name: "missing-one",
      setup: () => undefined,
      code: "AZURE_NOT_FOUND",
      has: ["404", '"missing-one"'],
    },
  ])("explains $code", async ({ name, setup, code, has }) => {
    setup();
    const { p, lines } = provider();
    const err = (await p
      .fetch({ provider: "azure", kind: "secret", name })
      .catch((e: unknown) => e)) as AgentError;
    expect(err).toBeInstanceOf(AgentError);
    expect(err.code).toBe(code);
    for (const h of has) expect(err.message).toContain(h);
    expect(findLeaks([err.message, ...lines], [TOKEN])).toEqual([]);
  });

  it("reads each distinct secret once however many files use it", async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const config: AgentConfig = {
        apiVersion: "dso.io/v1",
        kind: "AgentConfig",
        mountPath: dir,
        refreshSeconds: 60,
        fileMode: 0o440,
        azure: {
          vaultUrl: url,
          auth: "default",
          serviceVersion: "7.4",
          disableChallengeResourceVerification: true,
        },
        secrets: [
          { file: "a", ref: { provider: "azure", kind: "secret", name: "api-key" } },
          {
            file: "b",
            ref: { provider: "azure", kind: "secret", name: "api-key" },
            template: "KEY={{value}}",
          },
          {
            file: "c",
            ref: { provider: "azure", kind: "secret", name: "api-key", version: "v1aaaaaaaa" },
          },
        ],
      };
      const { p } = provider();
      const { logger, lines } = capturingLogger();
      const before = server.requests.filter((r) => r.authorized).length;
      await runOnce({ config, providers: new Map([["azure", p]]), logger, timeoutMs: 5000 });
      expect(server.requests.filter((r) => r.authorized).length - before).toBe(2);
      expect(await readFile(join(dir, "b"), "utf8")).toBe("KEY=api-key-value-0002");
      expect(findLeaks(lines, ["api-key-value-0002", "old-api-key-0001", TOKEN])).toEqual([]);
    } finally {
      await cleanup();
    }
  });

  it("sidecar re-reads the latest version on refresh and never re-reads a pinned one", async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const config: AgentConfig = {
        apiVersion: "dso.io/v1",
        kind: "AgentConfig",
        mountPath: dir,
        refreshSeconds: 1,
        fileMode: 0o440,
        azure: {
          vaultUrl: url,
          auth: "default",
          serviceVersion: "7.4",
          disableChallengeResourceVerification: true,
        },
        secrets: [
          { file: "latest", ref: { provider: "azure", kind: "secret", name: "api-key" } },
          {
            file: "pinned",
            ref: { provider: "azure", kind: "secret", name: "api-key", version: "v1aaaaaaaa" },
          },
        ],
      };
      const { p } = provider();
      const { logger } = capturingLogger();
      const sidecar = new Sidecar({
        config,
        providers: new Map([["azure", p]]),
        logger,
        metrics: new AgentMetrics(),
      });
      const reads = () => server.requests.filter((r) => r.authorized);
      const before = reads().length;
      await sidecar.start();
      await new Promise((r) => setTimeout(r, 2600));
      await sidecar.stop();
      const paths = reads()
        .slice(before)
        .map((r) => r.path);
      expect(paths.filter((x) => x === "/secrets/api-key/v1aaaaaaaa")).toHaveLength(1);
      expect(paths.filter((x) => x === "/secrets/api-key/").length).toBeGreaterThanOrEqual(2);
      expect(await readFile(join(dir, "pinned"), "utf8")).toBe("old-api-key-0001");
      expect(sidecar.health()).toBeUndefined();
    } finally {
      await cleanup();
    }
  });
});
