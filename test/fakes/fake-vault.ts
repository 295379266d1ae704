/**
 * FAKE: a small in-memory Vault/OpenBao API for the agent's unit tests: the paths the agent uses,
 * spoken over real HTTP on 127.0.0.1. Not a mock of node-vault: the agent's real client talks to it.
 *
 * The real proof is the end-to-end suite against OpenBao (test/e2e). This fake remains so that
 * `npm test` needs no server build and can inject faults in milliseconds (5xx for failover, leases
 * of a few seconds, tokens that stop renewing); moving those cases onto OpenBao is tracked work.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface TokenInfo {
  ttl: number;
  renewable: boolean;
  accessor: string;
  issuedAt: number;
  revoked: boolean;
  maxTtl: number;
}

export interface LeaseInfo {
  path: string;
  duration: number;
  maxTtl: number;
  issuedAt: number;
  renewedAt: number;
  revoked: boolean;
  /** The token that created the lease. */
  token: string;
}

export interface RequestRecord {
  method: string;
  path: string;
  token: string | undefined;
  namespace: string | undefined;
  body: Record<string, unknown>;
}

export interface FakeVaultOptions {
  /** jwt → role it may log in as (kubernetes and jwt auth). */
  jwts?: Record<string, string>;
  approle?: { roleId: string; secretId: string };
  tokenTtl?: number;
  tokenMaxTtl?: number;
  /** KV v2 mount `secret/`: path under the mount → versions (last is current). */
  kv2?: Record<string, Record<string, unknown>[]>;
  /** KV v1 mount `kv1/`: path under the mount → data. */
  kv1?: Record<string, Record<string, unknown>>;
  /** Dynamic engine `database/`: creds/<role> returns new credentials each read. */
  dbRoles?: string[];
  leaseDuration?: number;
  leaseMaxTtl?: number;
  /** Paths (without v1/) that answer 403 whatever the token. */
  forbidden?: string[];
  denyMountLookup?: boolean;
  namespace?: string;
}

export class FakeVault {
  readonly tokens = new Map<string, TokenInfo>();
  readonly leases = new Map<string, LeaseInfo>();
  readonly requests: RequestRecord[] = [];
  readonly logins: { method: string; credential: string }[] = [];
  /** Every secret value and token this server handed out, for leak checks. */
  readonly issued = new Set<string>();
  /** Answer the next N requests with 503 (a sealed or failing node). */
  fail5xx = 0;
  /** Answer the next N requests with 429 (a rate-limit quota). */
  fail429 = 0;
  private server: Server | undefined;
  private leaseCounter = 0;
  now = () => Date.now();

  constructor(readonly options: FakeVaultOptions) {
    for (const versions of Object.values(options.kv2 ?? {})) {
      for (const v of versions)
        for (const val of Object.values(v)) if (typeof val === "string") this.issued.add(val);
    }
    for (const v of Object.values(options.kv1 ?? {})) {
      for (const val of Object.values(v)) if (typeof val === "string") this.issued.add(val);
    }
  }

  async listen(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        let body: Record<string, unknown> = {};
        try {
          body =
            chunks.length > 0
              ? (JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>)
              : {};
        } catch {
          body = {};
        }
        this.handle(req, res, body);
      });
    });
    await new Promise<void>((r) => this.server?.listen(0, "127.0.0.1", r));
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
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

  /** Issues a token as a login would (tests that pre-seed state). */
  issueToken(ttl = this.options.tokenTtl ?? 3600): { token: string; accessor: string } {
    const token = `hvs.${randomBytes(12).toString("hex")}`;
    const accessor = randomBytes(8).toString("hex");
    this.tokens.set(token, {
      ttl,
      renewable: true,
      accessor,
      issuedAt: this.now(),
      revoked: false,
      maxTtl: this.options.tokenMaxTtl ?? 86400,
    });
    this.issued.add(token);
    return { token, accessor };
  }

  private send(res: ServerResponse, status: number, body?: unknown): void {
    if (body === undefined) {
      res.writeHead(status).end();
      return;
    }
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  }

  private tokenValid(token: string | undefined): TokenInfo | undefined {
    if (token === undefined) return undefined;
    const t = this.tokens.get(token);
    if (t === undefined || t.revoked) return undefined;
    if (this.now() > t.issuedAt + t.ttl * 1000) return undefined;
    return t;
  }

  private handle(req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>): void {
    const url = new URL(req.url ?? "/", "http://x");
    const path = url.pathname.replace(/^\/v1\//, "");
    const token = req.headers["x-vault-token"] as string | undefined;
    const namespace = req.headers["x-vault-namespace"] as string | undefined;
    const method = req.method ?? "GET";
    this.requests.push({ method, path, token, namespace, body });
    if (this.fail429 > 0) {
      this.fail429 -= 1;
      res.setHeader("Retry-After", "1");
      this.send(res, 429, { errors: ['request path "' + path + '": rate limit quota exceeded'] });
      return;
    }
    if (this.fail5xx > 0) {
      this.fail5xx -= 1;
      this.send(res, 503, { errors: ["Vault is sealed"] });
      return;
    }
    if (this.options.namespace !== undefined && namespace !== this.options.namespace) {
      this.send(res, 403, { errors: ["permission denied"] });
      return;
    }
    const denied = () => {
      this.send(res, 403, { errors: ["permission denied"] });
    };
    // Logins.
    if (method === "POST" && path.endsWith("/login")) {
      let ok = false;
      if (path === "auth/approle/login") {
        const a = this.options.approle;
        ok = a !== undefined && body.role_id === a.roleId && body.secret_id === a.secretId;
        this.logins.push({ method: "approle", credential: String(body.secret_id) });
      } else {
        const jwt = String(body.jwt);
        ok = this.options.jwts?.[jwt] === body.role;
        this.logins.push({ method: path, credential: jwt });
        if (!ok && this.options.jwts?.[jwt] === undefined) {
          this.send(res, 403, { errors: ["permission denied"] });
          return;
        }
        if (!ok) {
          this.send(res, 400, { errors: [`invalid role name "${String(body.role)}"`] });
          return;
        }
      }
      if (!ok) {
        denied();
        return;
      }
      const { token, accessor } = this.issueToken();
      this.send(res, 200, {
        auth: {
          client_token: token,
          accessor,
          lease_duration: this.options.tokenTtl ?? 3600,
          renewable: true,
          policies: ["default"],
        },
      });
      return;
    }
    const t = this.tokenValid(token);
    if (t === undefined || this.options.forbidden?.includes(path)) {
      denied();
      return;
    }
    if (path === "auth/token/lookup-self") {
      const ttl = Math.max(0, Math.round((t.issuedAt + t.ttl * 1000 - this.now()) / 1000));
      this.send(res, 200, {
        data: { ttl, renewable: t.renewable, accessor: t.accessor, expire_time: "x" },
      });
      return;
    }
    if (path === "auth/token/renew-self") {
      const elapsed = (this.now() - t.issuedAt) / 1000;
      const ttl = Math.min(this.options.tokenTtl ?? 3600, Math.max(0, t.maxTtl - elapsed));
      t.ttl = elapsed + ttl;
      this.send(res, 200, {
        auth: { client_token: token, lease_duration: Math.round(ttl), renewable: true },
      });
      return;
    }
    if (path === "auth/token/revoke-self") {
      t.revoked = true;
      for (const l of this.leases.values()) if (l.token === token) l.revoked = true;
      this.send(res, 204);
      return;
    }
    if (path.startsWith("sys/internal/ui/mounts/")) {
      if (this.options.denyMountLookup === true) {
        denied();
        return;
      }
      const p = path.slice("sys/internal/ui/mounts/".length);
      const mount = p.split("/")[0] ?? "";
      if (mount === "secret")
        this.send(res, 200, { data: { path: "secret/", type: "kv", options: { version: "2" } } });
      else if (mount === "kv1")
        this.send(res, 200, { data: { path: "kv1/", type: "kv", options: { version: "1" } } });
      else if (mount === "database")
        this.send(res, 200, { data: { path: "database/", type: "database", options: null } });
      else this.send(res, 400, { errors: ["no mount"] });
      return;
    }
    if (path === "sys/leases/renew") {
      const l = this.leases.get(String(body.lease_id));
      if (l === undefined || l.revoked || this.now() > l.renewedAt + l.duration * 1000) {
        this.send(res, 400, { errors: ["lease not found"] });
        return;
      }
      const elapsed = (this.now() - l.issuedAt) / 1000;
      const inc = typeof body.increment === "number" ? body.increment : l.duration;
      const d = Math.max(0, Math.min(inc, l.maxTtl - elapsed));
      l.duration = Math.round(d);
      l.renewedAt = this.now();
      this.send(res, 200, { lease_id: body.lease_id, lease_duration: l.duration, renewable: true });
      return;
    }
    if (path === "sys/leases/revoke") {
      const l = this.leases.get(String(body.lease_id));
      if (l !== undefined) l.revoked = true;
      this.send(res, 204);
      return;
    }
    if (method === "GET" && path.startsWith("secret/")) {
      const rest = path.slice("secret/".length);
      if (!rest.startsWith("data/")) {
        this.send(res, 404, { errors: [] });
        return;
      }
      const versions = this.options.kv2?.[rest.slice("data/".length)];
      const current = versions?.[versions.length - 1];
      if (versions === undefined || current === undefined) {
        this.send(res, 404, { errors: [] });
        return;
      }
      this.send(res, 200, {
        lease_id: "",
        lease_duration: 0,
        renewable: false,
        data: {
          data: current,
          metadata: { version: versions.length, created_time: "2026-01-01T00:00:00Z" },
        },
      });
      return;
    }
    if (method === "GET" && path.startsWith("kv1/")) {
      const data = this.options.kv1?.[path.slice("kv1/".length)];
      if (data === undefined) {
        this.send(res, 404, { errors: [] });
        return;
      }
      this.send(res, 200, { lease_id: "", lease_duration: 2764800, renewable: false, data });
      return;
    }
    if (method === "GET" && path.startsWith("database/creds/")) {
      const role = path.slice("database/creds/".length);
      if (!(this.options.dbRoles ?? []).includes(role)) {
        this.send(res, 400, { errors: [`unknown role: ${role}`] });
        return;
      }
      this.leaseCounter += 1;
      const id = `database/creds/${role}/${randomBytes(6).toString("hex")}`;
      const duration = this.options.leaseDuration ?? 600;
      this.leases.set(id, {
        path,
        duration,
        maxTtl: this.options.leaseMaxTtl ?? 3600,
        issuedAt: this.now(),
        renewedAt: this.now(),
        revoked: false,
        token: token ?? "",
      });
      const username = `v-${role}-${this.leaseCounter}-${randomBytes(3).toString("hex")}`;
      const password = `pw-${randomBytes(12).toString("hex")}`;
      this.issued.add(username);
      this.issued.add(password);
      this.send(res, 200, {
        lease_id: id,
        lease_duration: duration,
        renewable: true,
        data: { username, password },
      });
      return;
    }
    this.send(res, 404, { errors: [] });
  }
}
