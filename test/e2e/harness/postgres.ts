// PostgreSQL (Debian's) for Vault's database secrets engine. initdb/postgres refuse to run as root,
// so as root they run as DSO_E2E_PG_RUN_AS (the `postgres` user) through runuser. Host connections
// need a password (scram-sha-256): a login with wrong or expired credentials must fail, or the
// "app logs in with the rendered credentials" check would prove nothing.
import { chownSync, chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import {
  freePort,
  makeTempDir,
  onTeardown,
  run,
  spawnManaged,
  waitFor,
  type ManagedProcess,
  type RunResult,
} from "./processes.js";

export interface Postgres {
  host: string;
  port: number;
  superuser: string;
  /** The superuser's password: test infrastructure, handed to OpenBao's database engine. */
  password: string;
  /** postgresql://<superuser>@127.0.0.1:<port>/postgres (no password in it). */
  url: string;
  /** Runs SQL as the superuser; returns psql's unaligned, tuples-only output. Throws on error. */
  psql(sql: string): Promise<string>;
  /** Connects as `user` with `password` (via PGPASSWORD, never argv) and runs `sql`. */
  psqlAs(user: string, password: string, sql: string): Promise<RunResult>;
  logs(): string;
  stop(): Promise<void>;
}

function pgBin(name: string): string {
  const dir = process.env.DSO_E2E_PG_BIN;
  if (dir === undefined || dir === "") {
    throw new Error("DSO_E2E_PG_BIN is not set: run test/e2e/provision.sh (the globalSetup does)");
  }
  return join(dir, name);
}

/** `runuser -u <user> -- cmd...` when running as root with DSO_E2E_PG_RUN_AS set. */
function asPgUser(cmd: string, args: string[]): [string, string[]] {
  const user = process.env.DSO_E2E_PG_RUN_AS;
  if (user !== undefined && user !== "" && process.getuid?.() === 0) {
    return ["runuser", ["-u", user, "--", cmd, ...args]];
  }
  return [cmd, args];
}

export async function startPostgres(): Promise<Postgres> {
  const dir = makeTempDir("dso-e2e-postgres");
  chmodSync(dir, 0o755);
  const data = join(dir, "data");
  const sock = join(dir, "sock");
  mkdirSync(sock);
  const superuser = "postgres";
  const password = randomBytes(12).toString("hex");
  const pwfile = join(dir, "pwfile");
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  const runAs = process.env.DSO_E2E_PG_RUN_AS;
  if (runAs !== undefined && runAs !== "" && process.getuid?.() === 0) {
    const id = await run("id", ["-u", runAs]);
    const gid = await run("id", ["-g", runAs]);
    const uid = Number(id.stdout.trim());
    const g = Number(gid.stdout.trim());
    chownSync(dir, uid, g);
    chownSync(sock, uid, g);
    chownSync(pwfile, uid, g);
  }
  const [initCmd, initArgs] = asPgUser(pgBin("initdb"), [
    "-D",
    data,
    "-U",
    superuser,
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
    `--pwfile=${pwfile}`,
    "-E",
    "UTF8",
    "--no-instructions",
  ]);
  const init = await run(initCmd, initArgs, { timeoutMs: 120_000 });
  if (init.code !== 0) throw new Error(`initdb failed (${init.code}): ${init.stderr}`);

  const port = await freePort();
  const [cmd, args] = asPgUser(pgBin("postgres"), [
    "-D",
    data,
    "-c",
    "listen_addresses=127.0.0.1",
    "-p",
    String(port),
    "-k",
    sock,
    "-c",
    "fsync=off",
    "-c",
    "logging_collector=off",
  ]);
  const proc: ManagedProcess = spawnManaged("postgres", cmd, args, {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    logFile: join(dir, "postgres.log"),
  });

  const psqlRaw = (user: string, pass: string, sql: string): Promise<RunResult> =>
    run(
      pgBin("psql"),
      [
        "-h",
        "127.0.0.1",
        "-p",
        String(port),
        "-U",
        user,
        "-d",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-tAc",
        sql,
      ],
      {
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          PGPASSWORD: pass,
          PGCONNECT_TIMEOUT: "5",
        },
        timeoutMs: 30_000,
      },
    );

  // SIGTERM is PostgreSQL's "smart" shutdown, which waits for OpenBao's pooled connections to
  // close; "fast" shutdown (pg_ctl -m fast) ends them and cleans up its shared memory in /dev/shm.
  let stopped: Promise<void> | undefined;
  const fastStop = (): Promise<void> => {
    stopped ??= (async () => {
      if (!proc.hasExited()) {
        const [c, a] = asPgUser(pgBin("pg_ctl"), [
          "-D",
          data,
          "-m",
          "fast",
          "-w",
          "-t",
          "20",
          "stop",
        ]);
        await run(c, a, { timeoutMs: 30_000 }).catch(() => undefined);
      }
      await proc.stop(5_000);
    })();
    return stopped;
  };
  onTeardown(fastStop);

  const pg: Postgres = {
    host: "127.0.0.1",
    port,
    superuser,
    password,
    url: `postgresql://${superuser}@127.0.0.1:${port}/postgres`,
    async psql(sql) {
      const r = await psqlRaw(superuser, password, sql);
      if (r.code !== 0) throw new Error(`psql failed (${r.code}): ${r.stderr.trim()}`);
      return r.stdout.trim();
    },
    psqlAs: psqlRaw,
    logs: () => proc.logs(),
    stop: fastStop,
  };
  await waitFor(async () => (await pg.psql("select 1")) === "1", {
    timeoutMs: 60_000,
    what: `PostgreSQL on 127.0.0.1:${port} to accept connections`,
    processes: [proc],
  });
  return pg;
}
