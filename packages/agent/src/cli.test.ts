import { readFile, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AgentConfig } from "@dso/core";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, runCli } from "./cli.js";
import { STATE_FILE } from "./state.js";
import { capturingStream, deadAddress, findLeaks, tempDir, writeText } from "./testing/helpers.js";
import { FakeVault } from "../../../test/fakes/fake-vault.js";

const JWT = "eyJhbGciOiJSUzI1NiJ9.pod-jwt-payload.signature";

async function freePort(): Promise<number> {
  return Number(new URL(await deadAddress()).port);
}

async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 8000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("condition not met in time");
}

describe("dso-agent modes end to end against a local Vault API", () => {
  let vault: FakeVault;
  let address: string;
  let dir: string;
  let cleanup: () => Promise<void>;
  let config: AgentConfig;
  const logs: string[] = [];
  const errors: string[] = [];

  beforeEach(async () => {
    vault = new FakeVault({
      jwts: { [JWT]: "app" },
      kv2: { "app/db": [{ user: "app", password: "kv2-password-9f8e7d" }] },
      kv1: { "app/api": { apikey: "kv1-apikey-1a2b3c" } },
      dbRoles: ["app"],
      leaseDuration: 600,
    });
    address = await vault.listen();
    ({ dir, cleanup } = await tempDir());
    const tokenFile = await writeText(join(dir, "sa-token"), JWT);
    config = {
      apiVersion: "dso.io/v1",
      kind: "AgentConfig",
      mountPath: join(dir, "secrets"),
      statePath: join(dir, "state"),
      refreshSeconds: 300,
      fileMode: 0o440,
      secrets: [
        { file: "password", ref: { provider: "vault", path: "secret/app/db", key: "password" } },
        {
          file: "db.url",
          ref: { provider: "vault", path: "secret/app/db" },
          template: "postgres://{{user}}:{{password}}@db/app",
        },
        { file: "api.json", ref: { provider: "vault", path: "kv1/app/api" } },
        { file: "dyn.json", ref: { provider: "vault", path: "database/creds/app" } },
      ],
      vault: {
        addresses: [address],
        authMethod: "kubernetes",
        authPath: "auth/kubernetes",
        role: "app",
        tokenFile,
        revokeOnShutdown: true,
      },
      pod: { namespace: "team", name: "app-0", serviceAccount: "app" },
    };
    logs.length = 0;
    errors.length = 0;
  });

  afterEach(async () => {
    await vault.close();
    await cleanup();
  });

  function cli(argv: string[], env: NodeJS.ProcessEnv, stop = new AbortController().signal) {
    const { stream, lines } = capturingStream();
    return runCli({
      argv,
      // The most verbose level, so the leak checks see every line the agent can log.
      env: { DSO_LOG_LEVEL: "trace", ...env },
      logStream: stream,
      errorLine: (l) => errors.push(l),
      stop,
      terminationLogPath: join(dir, "termination-log"),
    }).finally(() => logs.push(...lines));
  }

  function leaks(): string[] {
    return findLeaks([...logs, ...errors], [...vault.issued, JWT]);
  }

  it("init writes every file and hands over; the sidecar continues with the same token and lease, then revokes on SIGTERM", async () => {
    const env = { DSO_AGENT_CONFIG: JSON.stringify(config) };
    expect(await cli(["init"], env)).toBe(EXIT_OK);
    const m = config.mountPath;
    expect(await readFile(join(m, "password"), "utf8")).toBe("kv2-password-9f8e7d");
    expect(await readFile(join(m, "db.url"), "utf8")).toBe(
      "postgres://app:kv2-password-9f8e7d@db/app",
    );
    expect(JSON.parse(await readFile(join(m, "api.json"), "utf8"))).toEqual({
      apikey: "kv1-apikey-1a2b3c",
    });
    const dyn = JSON.parse(await readFile(join(m, "dyn.json"), "utf8")) as { username: string };
    expect((await stat(join(config.statePath ?? "", STATE_FILE))).mode & 0o777).toBe(0o600);
    // secret/app/db was read once for two files.
    expect(vault.requests.filter((r) => r.path === "secret/data/app/db")).toHaveLength(1);
    expect(vault.logins).toHaveLength(1);
    expect(vault.leases.size).toBe(1);

    const port = await freePort();
    const stop = new AbortController();
    const sidecar = cli(["sidecar", "--telemetry-port", String(port)], env, stop.signal);
    await waitFor(async () => {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
      return r?.status === 200;
    });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain('dso_agent_last_success_timestamp_seconds{file="dyn.json"}');
    expect(metrics).toContain('dso_agent_lease_expiry_timestamp_seconds{file="dyn.json"}');
    expect(metrics).toContain("dso_agent_fetches_total");
    expect(findLeaks([metrics], vault.issued)).toEqual([]);
    // One login per pod and one set of dynamic credentials.
    expect(vault.logins).toHaveLength(1);
    expect(vault.leases.size).toBe(1);
    expect(JSON.parse(await readFile(join(m, "dyn.json"), "utf8"))).toEqual(
      expect.objectContaining({ username: dyn.username }),
    );

    const t0 = Date.now();
    stop.abort();
    expect(await sidecar).toBe(EXIT_OK);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect([...vault.leases.values()].every((l) => l.revoked)).toBe(true);
    expect([...vault.tokens.values()].every((t) => t.revoked)).toBe(true);
    expect(logs.join("")).toContain("continuing from the init container's state");
    expect(leaks()).toEqual([]);
  });

  it("a sidecar without usable state logs in and reads everything itself, saying why", async () => {
    const env = { DSO_AGENT_CONFIG: JSON.stringify(config) };
    const port = await freePort();
    const stop = new AbortController();
    const sidecar = cli(["sidecar", "--telemetry-port", String(port)], env, stop.signal);
    await waitFor(async () => {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
      return r?.status === 200;
    });
    stop.abort();
    expect(await sidecar).toBe(EXIT_OK);
    expect(vault.logins).toHaveLength(1);
    expect(await readFile(join(config.mountPath, "password"), "utf8")).toBe("kv2-password-9f8e7d");
    expect(logs.join("")).toContain("no state was handed over");
    expect(leaks()).toEqual([]);
  });

  it("init fails within its deadline naming the secret and the path", async () => {
    config.secrets.push({ file: "missing", ref: { provider: "vault", path: "secret/data/nope" } });
    const env = { DSO_AGENT_CONFIG: JSON.stringify(config), DSO_INIT_TIMEOUT: "2" };
    const t0 = Date.now();
    expect(await cli(["init"], env)).toBe(EXIT_FAILED);
    expect(Date.now() - t0).toBeLessThan(5000);
    const last = errors.at(-1) ?? "";
    expect(last).toContain("vault:secret/data/nope (file missing)");
    expect(last).toContain("404");
    expect(await readFile(join(dir, "termination-log"), "utf8")).toContain("secret/data/nope");
    expect(leaks()).toEqual([]);
  });

  it("init stops promptly on SIGTERM instead of waiting for its deadline", async () => {
    const dead = await deadAddress();
    config.vault = { ...config.vault!, addresses: [dead] }; // eslint-disable-line @typescript-eslint/no-non-null-assertion
    const stop = new AbortController();
    const t0 = Date.now();
    const run = cli(["init"], { DSO_AGENT_CONFIG: JSON.stringify(config) }, stop.signal);
    setTimeout(() => {
      stop.abort();
    }, 300);
    expect(await run).toBe(EXIT_FAILED);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(errors.at(-1)).toContain("stopped by a signal");
  });

  it("init names the addresses when Vault is unreachable", async () => {
    const dead = await deadAddress();
    config.vault = { ...config.vault!, addresses: [dead] }; // eslint-disable-line @typescript-eslint/no-non-null-assertion
    const env = { DSO_AGENT_CONFIG: JSON.stringify(config) };
    expect(await cli(["init", "--timeout", "1"], env)).toBe(EXIT_FAILED);
    expect(errors.at(-1)).toContain(dead);
  });

  it.each([
    { argv: ["init"], env: {}, has: "DSO_AGENT_CONFIG" },
    { argv: ["init"], env: { DSO_AGENT_CONFIG: "{" }, has: "not valid JSON" },
    { argv: ["init"], env: { DSO_AGENT_CONFIG: '{"apiVersion":"dso.io/v2"}' }, has: "apiVersion" },
    { argv: ["deploy"], env: {}, has: "expected one mode" },
    { argv: ["init", "--bogus"], env: {}, has: "bogus" },
    {
      argv: ["render", "--config", "/nonexistent/agent.yaml"],
      env: {},
      has: "/nonexistent/agent.yaml",
    },
  ])("exits 2 on a usage or configuration error: $has", async ({ argv, env, has }) => {
    expect(await cli(argv, env)).toBe(EXIT_USAGE);
    expect(errors.at(-1)).toContain(has);
  });

  it("render reads a YAML file, takes --mount-path, and posts nothing", async () => {
    const { state: _s, ...rest } = { ...config, state: undefined };
    const yaml = [
      "apiVersion: dso.io/v1",
      "kind: AgentConfig",
      "mountPath: /will/be/overridden",
      "refreshSeconds: 60",
      "fileMode: 0o400",
      "secrets:",
      "  - file: api-key",
      "    ref: { provider: vault, path: kv1/app/api, key: apikey }",
      "vault:",
      `  addresses: ["${rest.vault?.addresses[0] ?? ""}"]`,
      "  authMethod: jwt",
      "  authPath: auth/jwt",
      "  role: app",
      `  tokenFile: ${rest.vault?.tokenFile ?? ""}`,
    ].join("\n");
    const file = join(dir, "agent.yaml");
    await writeFile(file, yaml);
    const out = join(dir, "out");
    expect(await cli(["render", "--config", file, "--mount-path", out], {})).toBe(EXIT_OK);
    expect(await readFile(join(out, "api-key"), "utf8")).toBe("kv1-apikey-1a2b3c");
    expect((await stat(join(out, "..data", "api-key"))).mode & 0o777).toBe(0o400);
    expect(leaks()).toEqual([]);
  });

  it("sidecar renews a short lease, replaces it before max TTL, and notifies the app", async () => {
    vault.options.leaseDuration = 3;
    vault.options.leaseMaxTtl = 4;
    const posts: string[] = [];
    const app = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        posts.push(body);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
    const appPort = (app.address() as { port: number }).port;
    config.onChange = { kind: "http", url: `http://127.0.0.1:${appPort}/reload` };
    config.secrets = config.secrets.filter((s) => s.file === "dyn.json");
    const env = { DSO_AGENT_CONFIG: JSON.stringify(config) };
    expect(await cli(["init"], env)).toBe(EXIT_OK);
    const first = await readFile(join(config.mountPath, "dyn.json"), "utf8");
    const stop = new AbortController();
    const sidecar = cli(
      ["sidecar", "--telemetry-port", String(await freePort())],
      env,
      stop.signal,
    );
    let changedAt = 0;
    try {
      await waitFor(() => {
        if (posts.length > 0 && changedAt === 0) changedAt = Date.now();
        return posts.length > 0;
      }, 9000);
      expect(
        vault.requests.filter((r) => r.path === "sys/leases/renew").length,
      ).toBeGreaterThanOrEqual(1);
      expect(vault.leases.size).toBe(2);
      // New credentials arrive while the first ones still have at least a quarter of their
      // 3 s lease left before the 4 s max TTL, not in the last instant.
      const firstLease = [...vault.leases.values()].sort((a, b) => a.issuedAt - b.issuedAt)[0];
      expect(changedAt).toBeLessThanOrEqual((firstLease?.issuedAt ?? 0) + 4_000 - 750);
      expect(await readFile(join(config.mountPath, "dyn.json"), "utf8")).not.toBe(first);
      expect(JSON.parse(posts[0] ?? "{}")).toEqual({
        event: "secrets-changed",
        files: ["dyn.json"],
      });
      expect(vault.logins).toHaveLength(1);
    } finally {
      stop.abort();
      await sidecar;
      await new Promise<void>((r) =>
        app.close(() => {
          r();
        }),
      );
    }
    expect(leaks()).toEqual([]);
  }, 15_000);

  it("sidecar reads new dynamic credentials when a read had to log in again (token revoked)", async () => {
    config.refreshSeconds = 1;
    config.secrets = config.secrets.filter((s) => s.file === "dyn.json" || s.file === "api.json");
    const env = { DSO_AGENT_CONFIG: JSON.stringify(config) };
    expect(await cli(["init"], env)).toBe(EXIT_OK);
    const first = await readFile(join(config.mountPath, "dyn.json"), "utf8");
    const stop = new AbortController();
    const sidecar = cli(
      ["sidecar", "--telemetry-port", String(await freePort())],
      env,
      stop.signal,
    );
    try {
      await waitFor(
        () => logs.length > 0 || vault.requests.some((r) => r.path === "auth/token/lookup-self"),
      );
      // An operator revokes the token: Vault revokes its leases with it.
      for (const [token, t] of vault.tokens) {
        t.revoked = true;
        for (const l of vault.leases.values()) if (l.token === token) l.revoked = true;
      }
      await waitFor(
        async () => (await readFile(join(config.mountPath, "dyn.json"), "utf8")) !== first,
        8000,
      );
      expect(vault.logins).toHaveLength(2);
      expect(vault.leases.size).toBe(2);
    } finally {
      stop.abort();
      await sidecar;
    }
    expect(leaks()).toEqual([]);
  }, 15_000);

  it("sidecar removes a leased file it cannot read again once the lease has run out", async () => {
    vault.options.leaseDuration = 2;
    vault.options.leaseMaxTtl = 2;
    config.secrets = config.secrets.filter((s) => s.file === "dyn.json" || s.file === "api.json");
    const env = { DSO_AGENT_CONFIG: JSON.stringify(config) };
    expect(await cli(["init"], env)).toBe(EXIT_OK);
    vault.options.forbidden = ["database/creds/app", "sys/leases/renew"];
    const stop = new AbortController();
    const port = await freePort();
    const sidecar = cli(["sidecar", "--telemetry-port", String(port)], env, stop.signal);
    try {
      await waitFor(async () => {
        try {
          await stat(join(config.mountPath, "dyn.json"));
          return false;
        } catch {
          return true;
        }
      }, 8000);
      expect(await readFile(join(config.mountPath, "api.json"), "utf8")).toContain(
        "kv1-apikey-1a2b3c",
      );
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(health.status).toBe(503);
      expect(await health.text()).toContain("database/creds/app");
    } finally {
      stop.abort();
      await sidecar;
    }
    expect(logs.join("")).toContain("removing its files");
    expect(leaks()).toEqual([]);
  }, 15_000);
});
