import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { VaultConfig } from "@dso/core";
import { AgentError } from "../errors.js";
import { capturingLogger, deadAddress, findLeaks, tempDir, writeText } from "../testing/helpers.js";
import { FakeVault } from "../../../../test/fakes/fake-vault.js";
import { VaultProvider } from "./vault.js";

const POD = { namespace: "team", name: "app-0", serviceAccount: "app" };

describe("VaultProvider against a local Vault API", () => {
  let vault: FakeVault;
  let address: string;
  let dir: string;
  let cleanup: () => Promise<void>;
  let tokenFile: string;

  beforeEach(async () => {
    vault = new FakeVault({
      jwts: { "jwt-one-aaaaaaaa": "app", "jwt-two-bbbbbbbb": "app" },
      approle: { roleId: "role-id-1234", secretId: "secret-id-5678" },
      kv2: {
        "app/db": [{ password: "old-pass-111111" }, { password: "kv2-pass-222222", user: "app" }],
      },
      kv1: { "app/api": { apikey: "kv1-key-333333" } },
      dbRoles: ["app"],
      leaseDuration: 600,
      leaseMaxTtl: 900,
      forbidden: ["secret/data/other"],
    });
    address = await vault.listen();
    ({ dir, cleanup } = await tempDir());
    tokenFile = await writeText(join(dir, "token"), "jwt-one-aaaaaaaa\n");
  });

  afterEach(async () => {
    await vault.close();
    await cleanup();
  });

  function provider(over: Partial<VaultConfig> = {}) {
    const { logger, lines } = capturingLogger();
    const config: VaultConfig = {
      addresses: [address],
      authMethod: "kubernetes",
      authPath: "auth/kubernetes",
      role: "app",
      tokenFile,
      ...over,
    };
    return { p: new VaultProvider({ config, pod: POD, logger }), lines };
  }

  it.each([
    { path: "secret/app/db", mountLookups: 1, version: "2" },
    { path: "secret/data/app/db", mountLookups: 0, version: "2" },
  ])(
    "reads KV v2 at $path (mount lookups: $mountLookups)",
    async ({ path, mountLookups, version }) => {
      const { p } = provider();
      await p.start();
      const got = await p.fetch({ provider: "vault", path });
      expect(got.value).toEqual({ password: "kv2-pass-222222", user: "app" });
      expect(got.version).toBe(version);
      expect(got.lease).toBeUndefined();
      expect(
        vault.requests.filter((r) => r.path.startsWith("sys/internal/ui/mounts/")),
      ).toHaveLength(mountLookups);
    },
  );

  it("reads KV v1 without rewriting the path", async () => {
    const { p } = provider();
    await p.start();
    const got = await p.fetch({ provider: "vault", path: "kv1/app/api" });
    expect(got.value).toEqual({ apikey: "kv1-key-333333" });
    expect(got.version).toBeUndefined();
    expect(got.lease).toBeUndefined();
  });

  it("falls back to the KV v2 form when the mount lookup is not permitted", async () => {
    vault.options.denyMountLookup = true;
    const { p } = provider();
    await p.start();
    const got = await p.fetch({ provider: "vault", path: "secret/app/db" });
    expect(got.version).toBe("2");
    const reads = vault.requests.filter((r) => r.method === "GET" && r.path.startsWith("secret/"));
    expect(reads.map((r) => r.path)).toEqual(["secret/app/db", "secret/data/app/db"]);
  });

  it("re-reads the token file on every login and logs in again once after a 403", async () => {
    const { p } = provider();
    await p.start();
    await writeText(tokenFile, "jwt-two-bbbbbbbb");
    for (const t of vault.tokens.values()) t.revoked = true;
    const got = await p.fetch({ provider: "vault", path: "kv1/app/api" });
    expect(got.value).toEqual({ apikey: "kv1-key-333333" });
    expect(vault.logins.map((l) => l.credential)).toEqual(["jwt-one-aaaaaaaa", "jwt-two-bbbbbbbb"]);
  });

  it("logs in with AppRole from files", async () => {
    const roleIdFile = await writeText(join(dir, "role-id"), "role-id-1234");
    const secretIdFile = await writeText(join(dir, "secret-id"), "secret-id-5678\n");
    const { p } = provider({
      authMethod: "approle",
      authPath: "auth/approle",
      roleIdFile,
      secretIdFile,
    });
    await p.start();
    expect((await p.fetch({ provider: "vault", path: "kv1/app/api" })).value).toEqual({
      apikey: "kv1-key-333333",
    });
    expect(vault.logins).toEqual([{ method: "approle", credential: "secret-id-5678" }]);
  });

  it("sends the namespace header on every request", async () => {
    vault.options.namespace = "team-a";
    const { p } = provider({ namespace: "team-a" });
    await p.start();
    await p.fetch({ provider: "vault", path: "kv1/app/api" });
    expect(vault.requests.every((r) => r.namespace === "team-a")).toBe(true);
  });

  it("renews, then revokes, a dynamic lease", async () => {
    const { p } = provider();
    await p.start();
    const got = await p.fetch({ provider: "vault", path: "database/creds/app" });
    expect(got.lease).toMatchObject({
      durationSeconds: 600,
      renewable: true,
      initialDurationSeconds: 600,
    });
    const lease = got.lease;
    if (lease === undefined) throw new Error("no lease");
    const renewed = await p.renewLease(lease);
    expect(renewed.durationSeconds).toBe(600);
    expect(vault.requests.find((r) => r.path === "sys/leases/renew")?.body).toEqual({
      lease_id: lease.id,
      increment: 600,
    });
    await p.revokeLease(lease.id);
    expect(vault.leases.get(lease.id)?.revoked).toBe(true);
  });

  it("explains a refused lease revocation (Vault's default policy has no sys/leases/revoke)", async () => {
    vault.options.forbidden = ["sys/leases/revoke"];
    const { p } = provider();
    await p.start();
    const got = await p.fetch({ provider: "vault", path: "database/creds/app" });
    const lease = got.lease;
    if (lease === undefined) throw new Error("no lease");
    const err = await p.revokeLease(lease.id).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).code).toBe("VAULT_FORBIDDEN");
    expect((err as AgentError).message).toBe(
      `Vault denied revoking lease ${lease.id} (HTTP 403) for role "app" as service account "team/app" via auth/kubernetes; the lease ends when the token that created it is revoked or expires (grant "update" on sys/leases/revoke to revoke it directly)`,
    );
    expect(vault.leases.get(lease.id)?.revoked).toBe(false);
  });

  it("renews its token and logs in again when renewal is refused", async () => {
    const { p } = provider();
    await p.start();
    expect(await p.renewAuth()).toEqual({ relogged: false });
    for (const t of vault.tokens.values()) t.revoked = true;
    expect(await p.renewAuth()).toEqual({ relogged: true });
    expect(vault.logins).toHaveLength(2);
    const due = p.authRenewalDueMs(Date.now());
    expect(due).toBeGreaterThan(2300 * 1000);
    expect(due).toBeLessThanOrEqual(2400 * 1000);
  });

  it("resumes a handed-over token after lookup-self and refuses a revoked one", async () => {
    const { token, accessor } = vault.issueToken(3600);
    const { p } = provider();
    expect(await p.start({ token: { token, accessor, initialTtlSeconds: 3600 } })).toEqual({
      resumed: true,
    });
    expect(vault.logins).toHaveLength(0);
    for (const t of vault.tokens.values()) t.revoked = true;
    const { p: p2 } = provider();
    const r = await p2.start({ token: { token, accessor, initialTtlSeconds: 3600 } });
    expect(r.resumed).toBe(false);
    expect(r.reason).toContain("HTTP 403");
    expect(vault.logins).toHaveLength(1);
  });

  it("fails over to the next address on connection errors and 5xx", async () => {
    const dead = await deadAddress();
    const { p, lines } = provider({ addresses: [dead, address] });
    await p.start();
    vault.fail5xx = 1;
    const { p: p2 } = provider({ addresses: [address, address.replace("127.0.0.1", "localhost")] });
    await p2.start();
    expect((await p2.fetch({ provider: "vault", path: "kv1/app/api" })).value).toBeDefined();
    expect(lines.join("")).toContain("failed over");
  });

  it("reports a 429 as throttling, not as a refused login, and recovers", async () => {
    const { p, lines } = provider();
    vault.fail429 = 1;
    const err = await p.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).code).toBe("VAULT_THROTTLED");
    expect((err as AgentError).message).toContain("HTTP 429");
    expect((err as AgentError).message).not.toContain("bound to this identity");
    expect((err as AgentError).retryable).toBe(true);
    await p.start();
    expect((await p.fetch({ provider: "vault", path: "kv1/app/api" })).value).toBeDefined();
    expect(lines.join("")).not.toContain("jwt-one-aaaaaaaa");
  });

  const errorCases = [
    {
      name: "403 names the role, the service account and the auth path",
      run: async (p: VaultProvider) => p.fetch({ provider: "vault", path: "secret/data/other" }),
      code: "VAULT_FORBIDDEN",
      contains: [
        '"secret/data/other"',
        'role "app"',
        'service account "team/app"',
        "auth/kubernetes",
        "403",
      ],
    },
    {
      name: "404 names the path",
      run: async (p: VaultProvider) => p.fetch({ provider: "vault", path: "secret/data/missing" }),
      code: "VAULT_NOT_FOUND",
      contains: ['"secret/data/missing"', "404"],
    },
  ];

  it.each(errorCases)("$name", async ({ run, code, contains }) => {
    const { p, lines } = provider();
    await p.start();
    const err = await run(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).code).toBe(code);
    for (const c of contains) expect((err as AgentError).message).toContain(c);
    expect(
      findLeaks([(err as Error).message, (err as Error).stack ?? "", ...lines], vault.issued),
    ).toEqual([]);
    expect(findLeaks([(err as Error).message, ...lines], ["jwt-one-aaaaaaaa"])).toEqual([]);
  });

  it("names the role and identity when login is refused, never the JWT", async () => {
    const { p } = provider({ role: "wrong" });
    const err = (await p.start().catch((e: unknown) => e)) as AgentError;
    expect(err.code).toBe("VAULT_LOGIN_FAILED");
    expect(err.message).toContain('role "wrong"');
    expect(err.message).toContain('service account "team/app"');
    expect(err.message).toContain("invalid role name");
    expect(err.message).not.toContain("jwt-one-aaaaaaaa");
  });

  it("names every address when Vault is unreachable", async () => {
    const a = await deadAddress();
    const b = await deadAddress();
    const { p } = provider({ addresses: [a, b] });
    const err = (await p.start().catch((e: unknown) => e)) as AgentError;
    expect(err.code).toBe("VAULT_UNREACHABLE");
    expect(err.message).toContain(a);
    expect(err.message).toContain(b);
  });

  it("names the token file when it cannot be read", async () => {
    const { p } = provider({ tokenFile: join(dir, "absent") });
    const err = (await p.start().catch((e: unknown) => e)) as AgentError;
    expect(err.code).toBe("CREDENTIAL_FILE_UNREADABLE");
    expect(err.message).toContain(join(dir, "absent"));
  });
});
