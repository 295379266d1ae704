import { readFile } from "node:fs/promises";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import nodeVault from "node-vault";
import type { Logger } from "pino";
import type { AgentConfig, SecretRef, VaultConfig } from "@dso/core";
import { AgentError } from "../errors.js";
import type { FetchedSecret, Lease, Provider, ProviderState } from "./provider.js";

type VaultClient = ReturnType<typeof nodeVault>;

/** Per-request timeout: an unreachable address must fail over quickly, well inside the init deadline. */
const REQUEST_TIMEOUT_MS = 10_000;

/** A non-5xx HTTP answer from Vault; 5xx and connection errors fail over to the next address instead. */
class VaultHttpError extends Error {
  constructor(
    readonly status: number,
    /** Vault's own error strings: short, and never echo tokens or secret data. */
    readonly errors: string[],
  ) {
    super(`HTTP ${status}`);
  }
}

interface TokenState {
  token: string;
  accessor: string;
  /** Epoch ms of the last login or renewal. */
  renewedAt: number;
  ttlSeconds: number;
  initialTtlSeconds: number;
  renewable: boolean;
}

export interface VaultProviderOptions {
  config: VaultConfig;
  pod: AgentConfig["pod"];
  logger: Logger;
  now?: () => number;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function statusOf(err: unknown): number | undefined {
  if (!isRecord(err) || !isRecord(err.response)) return undefined;
  const s = err.response.statusCode;
  return typeof s === "number" ? s : undefined;
}

function vaultErrorsOf(err: unknown): string[] {
  if (!isRecord(err) || !isRecord(err.response) || !isRecord(err.response.body)) return [];
  const e = err.response.body.errors;
  return Array.isArray(e)
    ? e.filter((x): x is string => typeof x === "string").map((x) => x.slice(0, 200))
    : [];
}

/** Connection-level failure text, e.g. "connect ECONNREFUSED 127.0.0.1:8200". Axios errors also carry the request config (with the token), so only the code and message are used. */
function connectionFailure(err: unknown): string {
  if (isRecord(err)) {
    const code = typeof err.code === "string" ? err.code : undefined;
    const message = typeof err.message === "string" ? err.message : undefined;
    if (message !== undefined && message !== "") return message.slice(0, 200);
    if (code !== undefined) return code;
  }
  return "connection failed";
}

export class VaultProvider implements Provider {
  readonly name = "vault" as const;
  private readonly config: VaultConfig;
  private readonly pod: AgentConfig["pod"];
  private readonly logger: Logger;
  private readonly now: () => number;
  private clients: { address: string; client: VaultClient }[] = [];
  private current = 0;
  private token: TokenState | undefined;
  /** Needs a fresh login at the next renewal point: the token is non-renewable or near its max TTL. */
  private reloginDue = false;
  private generation = 0;
  private readonly kvPaths = new Map<string, { path: string; kv2: boolean }>();

  constructor(options: VaultProviderOptions) {
    this.config = options.config;
    this.pod = options.pod;
    this.logger = options.logger.child({ provider: "vault" });
    this.now = options.now ?? Date.now;
  }

  private async clientsReady(): Promise<void> {
    if (this.clients.length > 0) return;
    let ca: string | undefined;
    if (this.config.caFile !== undefined) {
      try {
        ca = await readFile(this.config.caFile, "utf8");
      } catch (err) {
        throw new AgentError(
          "CREDENTIAL_FILE_UNREADABLE",
          `cannot read the Vault CA file ${this.config.caFile}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
        );
      }
    }
    this.clients = this.config.addresses.map((address) => ({
      address,
      client: nodeVault({
        endpoint: address,
        ...(this.config.namespace !== undefined ? { namespace: this.config.namespace } : {}),
        // node-vault's debug output would include request bodies (the login JWT).
        debug: () => undefined,
        requestOptions: {
          timeout: REQUEST_TIMEOUT_MS,
          // Our own keep-alive agents: given `ca`, node-vault builds an https.Agent without
          // keep-alive, and every request paid a TLS handshake (bench: 40 ms CPU per refresh).
          httpAgent: new HttpAgent({ keepAlive: true }),
          httpsAgent: new HttpsAgent({ keepAlive: true, ...(ca !== undefined ? { ca } : {}) }),
        },
      }),
    }));
  }

  /** Who we are, for error messages: the role and the identity presented, never the credential. */
  private identity(): string {
    const c = this.config;
    if (c.authMethod === "approle") {
      return `AppRole (role_id from ${c.roleIdFile ?? "?"}) via ${c.authPath}`;
    }
    const sa =
      this.pod?.serviceAccount !== undefined
        ? `service account "${this.pod.namespace ?? "?"}/${this.pod.serviceAccount}"`
        : `the identity in ${c.tokenFile ?? "the token file"}`;
    return `role "${c.role ?? "?"}" as ${sa} via ${c.authPath}`;
  }

  /** Runs one request, failing over across addresses on connection errors and 5xx. */
  private async call(what: string, fn: (c: VaultClient) => Promise<unknown>): Promise<unknown> {
    await this.clientsReady();
    const failures: string[] = [];
    const n = this.clients.length;
    for (let i = 0; i < n; i++) {
      const idx = (this.current + i) % n;
      const entry = this.clients[idx];
      if (entry === undefined) continue;
      try {
        const res = await fn(entry.client);
        if (idx !== this.current) {
          this.logger.warn({ address: entry.address }, "failed over to another Vault address");
        }
        this.current = idx;
        return res;
      } catch (err) {
        const status = statusOf(err);
        if (status === 429) {
          // Rate-limit quotas: another address would be throttled too. node-vault does not pass on
          // the Retry-After header, so the caller's backoff (with jitter) paces the retry.
          throw new AgentError(
            "VAULT_THROTTLED",
            `Vault is throttling requests (HTTP 429) while ${what} at ${entry.address}; retrying with backoff`,
          );
        }
        if (status !== undefined && status < 500)
          throw new VaultHttpError(status, vaultErrorsOf(err));
        const why = status !== undefined ? `HTTP ${status}` : connectionFailure(err);
        failures.push(`${entry.address} (${why})`);
        this.logger.warn({ address: entry.address, reason: why }, `Vault request failed: ${what}`);
      }
    }
    throw new AgentError(
      "VAULT_UNREACHABLE",
      `Vault is unreachable while ${what}: tried ${failures.join(", ")}`,
    );
  }

  private setToken(token: string): void {
    for (const c of this.clients) c.client.token = token;
  }

  private async readCredential(file: string | undefined, what: string): Promise<string> {
    if (file === undefined) {
      throw new AgentError("CREDENTIAL_FILE_UNREADABLE", `no file configured for the ${what}`);
    }
    try {
      return (await readFile(file, "utf8")).trim();
    } catch (err) {
      throw new AgentError(
        "CREDENTIAL_FILE_UNREADABLE",
        `cannot read the ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
      );
    }
  }

  /** Logs in; re-reads the credential files every time because the kubelet rotates projected tokens. */
  async login(): Promise<void> {
    await this.clientsReady();
    const c = this.config;
    const body =
      c.authMethod === "approle"
        ? {
            role_id: await this.readCredential(c.roleIdFile, "AppRole role_id"),
            secret_id: await this.readCredential(c.secretIdFile, "AppRole secret_id"),
          }
        : { role: c.role, jwt: await this.readCredential(c.tokenFile, "service-account token") };
    // Login paths are unauthenticated; a stale token header must not interfere.
    this.setToken("");
    let res: unknown;
    try {
      res = await this.call(`logging in at ${c.authPath}/login`, (v) =>
        v.write(`${c.authPath}/login`, body),
      );
    } catch (err) {
      if (err instanceof VaultHttpError) {
        const detail = err.errors.length > 0 ? `: ${err.errors.join("; ")}` : "";
        throw new AgentError(
          "VAULT_LOGIN_FAILED",
          `Vault refused login (HTTP ${err.status}) for ${this.identity()}${detail}; check that the role exists and is bound to this identity`,
        );
      }
      throw err;
    }
    const auth = isRecord(res) && isRecord(res.auth) ? res.auth : undefined;
    if (auth === undefined || typeof auth.client_token !== "string") {
      throw new AgentError(
        "VAULT_BAD_RESPONSE",
        `Vault's login response at ${c.authPath}/login has no token`,
      );
    }
    const ttl = typeof auth.lease_duration === "number" ? auth.lease_duration : 0;
    this.token = {
      token: auth.client_token,
      accessor: typeof auth.accessor === "string" ? auth.accessor : "",
      renewedAt: this.now(),
      ttlSeconds: ttl,
      initialTtlSeconds: ttl,
      renewable: auth.renewable === true,
    };
    this.reloginDue = !this.token.renewable;
    this.generation += 1;
    this.setToken(auth.client_token);
    this.logger.info(
      { authPath: c.authPath, ttlSeconds: ttl, renewable: this.token.renewable },
      "logged in to Vault",
    );
  }

  async start(resume?: ProviderState): Promise<{ resumed: boolean; reason?: string }> {
    await this.clientsReady();
    const reason = await this.tryResume(resume);
    if (reason === undefined) return { resumed: true };
    await this.login();
    return { resumed: false, reason };
  }

  /** Returns why the handed-over token cannot be used, or undefined after resuming it. */
  private async tryResume(resume: ProviderState | undefined): Promise<string | undefined> {
    if (resume === undefined) return "no Vault token handed over";
    const t = resume.token;
    if (
      !isRecord(t) ||
      typeof t.token !== "string" ||
      typeof t.initialTtlSeconds !== "number" ||
      typeof t.accessor !== "string"
    ) {
      return "handed-over Vault token state is malformed";
    }
    this.setToken(t.token);
    let res: unknown;
    try {
      res = await this.call("looking up the handed-over token", (v) => v.tokenLookupSelf());
    } catch (err) {
      this.setToken("");
      if (err instanceof VaultHttpError) return `handed-over token rejected (HTTP ${err.status})`;
      throw err;
    }
    const data = isRecord(res) && isRecord(res.data) ? res.data : undefined;
    const ttl = data !== undefined && typeof data.ttl === "number" ? data.ttl : undefined;
    if (ttl === undefined || (ttl <= 0 && data?.expire_time != null)) {
      this.setToken("");
      return "handed-over token has expired";
    }
    this.token = {
      token: t.token,
      accessor: t.accessor,
      renewedAt: this.now(),
      ttlSeconds: ttl,
      initialTtlSeconds: t.initialTtlSeconds,
      renewable: data?.renewable === true,
    };
    this.reloginDue = !this.token.renewable || ttl < t.initialTtlSeconds / 2;
    this.logger.info({ ttlSeconds: ttl }, "resumed the init container's Vault token");
    return undefined;
  }

  authGeneration(): number {
    return this.generation;
  }

  authRenewalDueMs(now: number): number | undefined {
    const t = this.token;
    if (t === undefined || t.ttlSeconds <= 0) return undefined;
    return Math.max(0, t.renewedAt + (t.ttlSeconds * 1000 * 2) / 3 - now);
  }

  async renewAuth(): Promise<{ relogged: boolean }> {
    if (this.token !== undefined && !this.reloginDue) {
      try {
        const res = await this.call("renewing the Vault token", (v) => v.tokenRenewSelf());
        const auth = isRecord(res) && isRecord(res.auth) ? res.auth : undefined;
        const ttl =
          auth !== undefined && typeof auth.lease_duration === "number" ? auth.lease_duration : 0;
        this.token = { ...this.token, renewedAt: this.now(), ttlSeconds: ttl };
        // A renewal capped well below the original TTL means the max TTL is close: log in next time.
        if (ttl < this.token.initialTtlSeconds / 2 || auth?.renewable === false)
          this.reloginDue = true;
        this.logger.info({ ttlSeconds: ttl }, "renewed the Vault token");
        return { relogged: false };
      } catch (err) {
        this.logger.warn(
          { reason: err instanceof VaultHttpError ? `HTTP ${err.status}` : (err as Error).message },
          "Vault token renewal failed; logging in again",
        );
      }
    }
    await this.login();
    return { relogged: true };
  }

  dedupeKey(ref: SecretRef): string {
    return ref.provider === "vault" ? `vault:${ref.path}` : `other:${JSON.stringify(ref)}`;
  }

  /** Reads a path; on 403 logs in again once (the token may have been revoked) and retries. */
  private async readPath(path: string): Promise<unknown> {
    try {
      return await this.call(`reading ${path}`, (v) => v.read(path));
    } catch (err) {
      if (!(err instanceof VaultHttpError) || err.status !== 403) throw err;
      this.logger.warn(
        { path },
        "Vault denied a read; logging in again once in case the token was revoked",
      );
      await this.login();
      return await this.call(`reading ${path}`, (v) => v.read(path));
    }
  }

  /** The API path to read: honours an explicit `data/` segment, else asks Vault for the mount's KV version. */
  private async resolvePath(path: string): Promise<{ path: string; kv2: boolean | "shape" }> {
    const segments = path.split("/");
    if (segments.slice(0, -1).includes("data")) return { path, kv2: "shape" };
    const cached = this.kvPaths.get(path);
    if (cached !== undefined) return cached;
    let resolved: { path: string; kv2: boolean } | undefined;
    try {
      const res = await this.call(`looking up the mount of ${path}`, (v) =>
        v.read(`sys/internal/ui/mounts/${path}`),
      );
      const data = isRecord(res) && isRecord(res.data) ? res.data : undefined;
      const mount = typeof data?.path === "string" ? data.path : undefined;
      const options = isRecord(data?.options) ? data.options : undefined;
      if (
        data?.type === "kv" &&
        options?.version === "2" &&
        mount !== undefined &&
        path.startsWith(mount)
      ) {
        resolved = { path: `${mount}data/${path.slice(mount.length)}`, kv2: true };
      } else if (mount !== undefined) {
        resolved = { path, kv2: false };
      }
    } catch (err) {
      if (!(err instanceof VaultHttpError)) throw err;
      // Policies often deny sys/internal/ui/mounts; fall back to reading the path as written.
      this.logger.debug(
        { path, status: err.status },
        "mount lookup not permitted; reading the path as written",
      );
    }
    if (resolved !== undefined) this.kvPaths.set(path, resolved);
    return resolved ?? { path, kv2: "shape" };
  }

  async fetch(ref: SecretRef): Promise<FetchedSecret> {
    if (ref.provider !== "vault") throw new Error("VaultProvider was given a non-Vault reference");
    const resolved = await this.resolvePath(ref.path);
    let body: unknown;
    try {
      body = await this.readPath(resolved.path);
    } catch (err) {
      if (!(err instanceof VaultHttpError)) throw err;
      // Without mount information, a KV v2 secret written without `data/` answers 404: try the v2 form once.
      const segs = ref.path.split("/");
      if (
        err.status === 404 &&
        resolved.kv2 === "shape" &&
        resolved.path === ref.path &&
        segs.length > 1
      ) {
        const v2 = `${segs[0] ?? ""}/data/${segs.slice(1).join("/")}`;
        try {
          body = await this.readPath(v2);
          this.kvPaths.set(ref.path, { path: v2, kv2: true });
        } catch (err2) {
          if (err2 instanceof VaultHttpError) throw this.readError(ref.path, err2);
          throw err2;
        }
      } else {
        throw this.readError(ref.path, err);
      }
    }
    return this.parseRead(ref.path, body, resolved.kv2);
  }

  private readError(path: string, err: VaultHttpError): AgentError {
    if (err.status === 403) {
      return new AgentError(
        "VAULT_FORBIDDEN",
        `Vault denied reading "${path}" (HTTP 403) for ${this.identity()}; check the policies attached to the role`,
      );
    }
    if (err.status === 404) {
      return new AgentError(
        "VAULT_NOT_FOUND",
        `Vault has no secret at "${path}" (HTTP 404); check the path and, for KV v2, that a version exists`,
      );
    }
    return new AgentError(
      "VAULT_BAD_RESPONSE",
      `Vault answered HTTP ${err.status} reading "${path}"${err.errors.length > 0 ? `: ${err.errors.join("; ")}` : ""}`,
    );
  }

  private parseRead(path: string, body: unknown, kv2: boolean | "shape"): FetchedSecret {
    const data = isRecord(body) && isRecord(body.data) ? body.data : undefined;
    if (data === undefined || !isRecord(body)) {
      throw new AgentError("VAULT_BAD_RESPONSE", `Vault's answer for "${path}" has no data`);
    }
    const looksV2 = isRecord(data.data) && isRecord(data.metadata);
    if (kv2 === true || (kv2 === "shape" && looksV2)) {
      if (!isRecord(data.data)) {
        throw new AgentError(
          "VAULT_NOT_FOUND",
          `Vault has no current version at "${path}" (it was deleted or destroyed)`,
        );
      }
      const meta = isRecord(data.metadata) ? data.metadata : {};
      const out: FetchedSecret = { value: data.data };
      if (typeof meta.version === "number") out.version = String(meta.version);
      return out;
    }
    const out: FetchedSecret = { value: data };
    if (typeof body.lease_id === "string" && body.lease_id !== "") {
      const d = typeof body.lease_duration === "number" ? body.lease_duration : 0;
      out.lease = {
        id: body.lease_id,
        durationSeconds: d,
        initialDurationSeconds: d,
        renewable: body.renewable === true,
        renewedAt: this.now(),
      };
    }
    return out;
  }

  async renewLease(lease: Lease): Promise<Lease> {
    let res: unknown;
    try {
      res = await this.call(`renewing lease ${lease.id}`, (v) =>
        v.write("sys/leases/renew", {
          lease_id: lease.id,
          increment: lease.initialDurationSeconds,
        }),
      );
    } catch (err) {
      if (err instanceof VaultHttpError) {
        throw new AgentError(
          "VAULT_BAD_RESPONSE",
          `Vault refused to renew lease ${lease.id} (HTTP ${err.status})`,
        );
      }
      throw err;
    }
    const r = isRecord(res) ? res : {};
    return {
      ...lease,
      durationSeconds: typeof r.lease_duration === "number" ? r.lease_duration : 0,
      renewable: r.renewable === true,
      renewedAt: this.now(),
    };
  }

  async revokeLease(leaseId: string): Promise<void> {
    try {
      await this.call(`revoking lease ${leaseId}`, (v) =>
        v.write("sys/leases/revoke", { lease_id: leaseId }),
      );
    } catch (err) {
      if (!(err instanceof VaultHttpError)) throw err;
      // Vault's default policy lets a token renew its leases but not revoke them; a role that
      // only reads its credentials gets 403 here. Revoking the token (what revokeOnShutdown does
      // next) ends every lease it created, so say that instead of a bare status.
      if (err.status === 403) {
        throw new AgentError(
          "VAULT_FORBIDDEN",
          `Vault denied revoking lease ${leaseId} (HTTP 403) for ${this.identity()}; the lease ends when the token that created it is revoked or expires (grant "update" on sys/leases/revoke to revoke it directly)`,
        );
      }
      throw new AgentError(
        "VAULT_BAD_RESPONSE",
        `Vault refused to revoke lease ${leaseId} (HTTP ${err.status})`,
      );
    }
  }

  exportState(): ProviderState | undefined {
    if (this.token === undefined) return undefined;
    const t = this.token;
    return {
      token: {
        token: t.token,
        accessor: t.accessor,
        initialTtlSeconds: t.initialTtlSeconds,
        expiresAt: t.ttlSeconds > 0 ? t.renewedAt + t.ttlSeconds * 1000 : null,
        renewable: t.renewable,
      },
    };
  }

  async close(revoke: boolean): Promise<void> {
    if (revoke && this.token !== undefined) {
      try {
        await this.call("revoking the Vault token", (v) => v.write("auth/token/revoke-self", {}));
        this.logger.info("revoked the Vault token");
      } catch (err) {
        this.logger.warn({ reason: (err as Error).message }, "could not revoke the Vault token");
      }
    }
    this.token = undefined;
    this.setToken("");
  }
}
