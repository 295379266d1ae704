/**
 * FAKE, because no Key Vault server can run here: Lowkey Vault (the Key Vault emulator) is not
 * obtainable from this machine's registries (test/e2e/README-infra-notes.md).
 * A small Azure Key Vault secrets API over real HTTPS on 127.0.0.1 for tests: the bearer
 * challenge, GET /secrets/<name>/<version>?api-version=..., and 429 with Retry-After.
 */
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { TestCert } from "../../packages/agent/src/testing/tls.js";

export interface KvSecret {
  value: string;
  version: string;
  contentType?: string;
}

export class FakeKeyVault {
  /** name → versions, last is latest. */
  readonly secrets = new Map<string, KvSecret[]>();
  readonly requests: {
    path: string;
    apiVersion: string | null;
    authorized: boolean;
    at: number;
  }[] = [];
  /** name → number of 429 answers still to give. */
  readonly throttle = new Map<string, number>();
  /** Names that answer 403. */
  readonly forbidden = new Set<string>();
  readonly token: string;
  private server: Server | undefined;

  constructor(
    private readonly cert: TestCert,
    token: string,
  ) {
    this.token = token;
  }

  async listen(): Promise<string> {
    this.server = createServer({ key: this.cert.keyPem, cert: this.cert.certPem }, (req, res) => {
      const url = new URL(req.url ?? "/", "https://x");
      const authorized = req.headers.authorization === `Bearer ${this.token}`;
      this.requests.push({
        path: url.pathname,
        apiVersion: url.searchParams.get("api-version"),
        authorized,
        at: Date.now(),
      });
      req.resume();
      const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        res
          .writeHead(status, { "content-type": "application/json", ...headers })
          .end(JSON.stringify(body));
      };
      if (!authorized) {
        json(
          401,
          {
            error: {
              code: "Unauthorized",
              message: "AKV10000: Request is missing a Bearer or PoP token.",
            },
          },
          {
            "www-authenticate":
              'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"',
          },
        );
        return;
      }
      const m = /^\/secrets\/([^/]+)(?:\/([^/]*))?$/.exec(url.pathname);
      if (m === null || m[1] === undefined) {
        json(404, { error: { code: "NotFound", message: "not found" } });
        return;
      }
      const name = m[1];
      const left = this.throttle.get(name) ?? 0;
      if (left > 0) {
        this.throttle.set(name, left - 1);
        json(
          429,
          { error: { code: "Throttled", message: "Too many requests" } },
          { "retry-after": "1" },
        );
        return;
      }
      if (this.forbidden.has(name)) {
        json(403, {
          error: { code: "Forbidden", message: "The user does not have secrets get permission" },
        });
        return;
      }
      const versions = this.secrets.get(name) ?? [];
      const wanted = m[2];
      const s =
        wanted !== undefined && wanted !== ""
          ? versions.find((v) => v.version === wanted)
          : versions[versions.length - 1];
      if (s === undefined) {
        json(404, {
          error: {
            code: "SecretNotFound",
            message: `A secret with (name/id) ${name} was not found in this key vault.`,
          },
        });
        return;
      }
      const base = `https://${req.headers.host ?? "127.0.0.1"}`;
      json(200, {
        value: s.value,
        id: `${base}/secrets/${name}/${s.version}`,
        contentType: s.contentType,
        attributes: {
          enabled: true,
          created: 1700000000,
          updated: 1700000000,
          recoveryLevel: "Recoverable",
        },
        ...(s.contentType === "application/x-pkcs12" || s.contentType === "application/x-pem-file"
          ? { kid: `${base}/keys/${name}/${s.version}`, managed: true }
          : {}),
      });
    });
    await new Promise<void>((r) => this.server?.listen(0, "127.0.0.1", r));
    const { port } = this.server.address() as AddressInfo;
    return `https://127.0.0.1:${port}`;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (s === undefined) return;
    s.closeAllConnections();
    await new Promise<void>((r) =>
      s.close(() => {
        r();
      }),
    );
  }
}
